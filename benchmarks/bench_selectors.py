"""Selector matching throughput: 1,000 Calico selectors x 100,000 label sets.

    .venv/bin/python benchmarks/bench_selectors.py [--selectors 1000] [--label-sets 100000]

Builds a seeded cluster of pods (Deployments whose replicas share labels, plus StatefulSet
pods whose `statefulset.kubernetes.io/pod-name` label is unique) and 1,000 selectors of the
kinds policies use (==, !=, in, not in, has, !, &&, ||, contains / starts with / ends with),
written as Calico text and parsed. It reports the `LabelTable` encode time, the time to match
every selector against every label set (median of 3, leaf cache cleared before each run) and
label-set checks per second, then the named peer measured in the same run: the naive loop
calling `Selector.matches` once per (selector, label set) pair, on a sample. A second
scenario gives every pod a unique label, so no two label sets collapse into one class.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

from netwarden.dialects.calico_selector import parse_selector
from netwarden.engine.selector_index import LabelTable
from netwarden.model.selector import Selector

TIERS = ["frontend", "backend", "db", "cache", "queue", "batch"]
ENVS = ["prod", "staging", "dev", "test"]
REGIONS = ["us-east", "us-west", "eu-central", "ap-south"]
WORDS = [
    "pay",
    "cart",
    "user",
    "auth",
    "search",
    "ship",
    "stock",
    "mail",
    "feed",
    "ads",
    "price",
    "promo",
    "review",
    "order",
    "report",
    "media",
    "geo",
    "chat",
    "sso",
    "audit",
]
SUFFIXES = ["api", "web", "worker", "db", "cache", "gateway", "sync", "cron"]


def make_label_sets(rng: random.Random, count: int, unique: bool) -> list[dict[str, str]]:
    """Pods of Deployments (replicas share labels) and StatefulSets (one unique label each)."""
    apps = [f"{word}-{suffix}" for word in WORDS for suffix in SUFFIXES]
    teams = [f"team-{i}" for i in range(30)]
    pods: list[dict[str, str]] = []
    while len(pods) < count:
        labels = {
            "app": rng.choice(apps),
            "tier": rng.choice(TIERS),
            "team": rng.choice(teams),
            "env": rng.choice(ENVS),
            "version": f"v{rng.randint(1, 3)}.{rng.randint(0, 9)}",
        }
        if rng.random() < 0.3:
            labels["region"] = rng.choice(REGIONS)
        if rng.random() < 0.05:
            labels["canary"] = "true"
        stateful = rng.random() < 0.1
        if not stateful:
            labels["pod-template-hash"] = f"{rng.getrandbits(40):010x}"
        for replica in range(rng.randint(1, 40)):
            pod = dict(labels)
            if stateful:
                pod["statefulset.kubernetes.io/pod-name"] = f"{labels['app']}-{replica}"
            if unique:
                pod["pod-uid"] = str(len(pods))
            pods.append(pod)
    return pods[:count]


def make_selectors(rng: random.Random, count: int) -> list[str]:
    """Calico selector text of the shapes real policies use."""
    apps = [f"{word}-{suffix}" for word in WORDS for suffix in SUFFIXES]

    def app() -> str:
        return rng.choice(apps)

    templates: list[Callable[[], str]] = [
        lambda: f"app == '{app()}'",
        lambda: f"app == '{app()}' && env == '{rng.choice(ENVS)}'",
        lambda: f"app in {{'{app()}', '{app()}', '{app()}'}}",
        lambda: f"tier == '{rng.choice(TIERS)}' && env in {{'prod', 'staging'}}",
        lambda: f"team == 'team-{rng.randrange(30)}' && !has(canary)",
        lambda: f"has(canary) || version starts with 'v{rng.randint(1, 3)}.'",
        lambda: f"app starts with '{rng.choice(WORDS)}-' && env != 'dev'",
        lambda: f"app ends with '-{rng.choice(SUFFIXES)}' && tier not in {{'db', 'cache'}}",
        lambda: f"app contains '{rng.choice(WORDS)}' || team == 'team-{rng.randrange(30)}'",
        lambda: f"(tier == 'db' || tier == 'cache') && !(env == '{rng.choice(ENVS)}')",
        lambda: f"has(region) && region in {{'{rng.choice(REGIONS)}', '{rng.choice(REGIONS)}'}}",
        lambda: "env == 'prod' && has(statefulset.kubernetes.io/pod-name)",
    ]
    return [rng.choice(templates)() for _ in range(count)]


def median_seconds(run: Callable[[], object], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def vectorized_rate(
    selectors: list[Selector], label_sets: list[dict[str, str]], title: str
) -> float:
    start = time.perf_counter()
    table = LabelTable(label_sets)
    encode = time.perf_counter() - start

    def match_all() -> None:
        table.clear_cache()  # each run starts cold; leaves shared *within* a run are fair game
        for selector in selectors:
            table.matches(selector)

    seconds = median_seconds(match_all)
    rate = len(selectors) * len(label_sets) / seconds
    print(f"{title}: {len(label_sets):,} label sets in {table.class_count:,} classes")
    print(f"  encode      {encode:8.3f} s")
    print(f"  match       {seconds:8.3f} s  ({len(selectors):,} selectors, median of 3)")
    print(f"  throughput  {rate:14,.0f} label-set checks/s")
    return rate


def naive_rate(selectors: list[Selector], label_sets: list[dict[str, str]]) -> float:
    """The peer: one `Selector.matches` call per pair; checked to agree with LabelTable."""
    table = LabelTable(label_sets)
    for selector in selectors:
        expected = [selector.matches(labels) for labels in label_sets]
        assert table.matches(selector).tolist() == expected, selector

    def match_all() -> None:
        for selector in selectors:
            for labels in label_sets:
                selector.matches(labels)

    seconds = median_seconds(match_all)
    rate = len(selectors) * len(label_sets) / seconds
    print(f"naive Selector.matches loop: {len(selectors)} selectors x {len(label_sets):,} sets")
    print(f"  match       {seconds:8.3f} s  (median of 3)")
    print(f"  throughput  {rate:14,.0f} label-set checks/s")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--selectors", type=int, default=1000)
    parser.add_argument("--label-sets", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    selectors = [parse_selector(text) for text in make_selectors(rng, args.selectors)]
    realistic = make_label_sets(rng, args.label_sets, unique=False)
    distinct = make_label_sets(rng, args.label_sets, unique=True)

    fast = vectorized_rate(selectors, realistic, "LabelTable, realistic pods")
    floor = vectorized_rate(selectors, distinct, "LabelTable, every label set distinct")
    slow = naive_rate(selectors[:20], realistic[:10_000])
    print(f"ratio vs naive: {fast / slow:,.0f}x realistic, {floor / slow:,.0f}x all-distinct")


if __name__ == "__main__":
    main()
