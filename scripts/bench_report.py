#!/usr/bin/env python3
"""Turns scripts/bench.sh's results (JSON lines from `keygate bench --json`)
into the markdown report docs/performance.md shows."""
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

results_path, dur, runs = sys.argv[1], sys.argv[2], sys.argv[3]
rows = [json.loads(l) for l in open(results_path) if l.strip()]


def med(label, conns=None, key="rps"):
    vals = [r[key] for r in rows if r.get("label") == label and (conns is None or r.get("conns") == conns) and r.get(key) is not None]
    return statistics.median(vals) if vals else None


def errors(label):
    n = 0
    for r in rows:
        if r.get("label") == label:
            n += sum((r.get("errors") or {}).values())
    return n


def fmt(v, nd=0):
    if v is None:
        return "—"
    return f"{v:,.{nd}f}"


def verdict(ok):
    return "**met**" if ok else "**not met**"


cpu = "unknown CPU"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
go = subprocess.run(["go", "version"], capture_output=True, text=True).stdout.strip()
out = []
p = out.append
p("# keygate benchmark")
p("")
p(f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} × {cpu}, "
  f"{platform.system()} {platform.release()}, {go}. Load generator (`keygate bench`) on the same cores, loopback, "
  f"{dur} per run, median of {runs} runs, floor and keygate alternating. Reproduce: `scripts/bench.sh`.")
p("")
p("The floor only parses the form and signs the same claim set: nothing can be faster. CPU is the server's "
  "CPU time per wall second (cores). \"policy\" is keygate on bbolt with a key holding every policy field "
  "(expiry, token lifetime, two audiences and a `resource` parameter, four source CIDRs, metadata copied into "
  "tokens by `metadata_claims`).")
p("")
p("| alg | conns | server | req/s | ratio to floor | p50 ms | p99 ms | p99 / floor p99 | server CPU | errors |")
p("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
targets = []
for alg in ("ES256", "EdDSA"):
    for conns in (16, 64):
        floor = med(f"floor/{alg}", conns)
        floor_p99 = med(f"floor/{alg}", conns, "p99_ms")
        for name in ("floor", "bbolt", "redis", "policy"):
            label = f"{name}/{alg}"
            if name == "policy" and med(label, conns) is None:
                continue
            rps = med(label, conns)
            p99 = med(label, conns, "p99_ms")
            ratio = rps / floor if rps and floor else None
            p99r = p99 / floor_p99 if p99 and floor_p99 else None
            p(f"| {alg} | {conns} | {name} | {fmt(rps)} | {fmt(ratio, 2)} | {fmt(med(label, conns, 'p50_ms'), 2)} | "
              f"{fmt(p99, 1)} | {fmt(p99r, 2)} | {fmt(med(label, conns, 'server_cpu_cores'), 2)} | {errors(label) if name != 'floor' else '—'} |")
            if name == "bbolt" and ratio is not None:
                targets.append((f"keygate/bbolt ≥ 1.0× floor req/s ({alg}, {conns} conns; issue 18)", f"{ratio:.2f}×", ratio >= 1.0))
            if name == "policy" and ratio is not None:
                targets.append((f"keygate/bbolt, a key with every policy set, ≥ 0.9× floor req/s ({alg}, {conns} conns)", f"{ratio:.2f}×", ratio >= 0.9))
            if name == "redis" and ratio is not None:
                targets.append((f"keygate/Redis ≥ 0.7× floor req/s ({alg}, {conns} conns)", f"{ratio:.2f}×", ratio >= 0.7))
            if name != "floor" and conns == 64 and p99r is not None:
                targets.append((f"p99 ≤ 1.5× floor p99 ({name}, {alg}, 64 conns)", f"{p99r:.2f}×", p99r <= 1.5))

for store in ("bbolt", "redis"):
    p99 = med(f"open/{store}", key="p99_ms")
    rate = med(f"open/{store}", key="rate")
    if p99 is not None:
        targets.append((f"open loop at half the floor's maximum ({fmt(rate)} req/s): p99 ≤ 10 ms ({store})", f"{p99:.1f} ms", p99 <= 10))

seed_label = [r["label"] for r in rows if r.get("label", "").startswith("keys") and not r["label"].startswith("keys10/")]
for store in ("bbolt", "redis"):
    few = med(f"keys10/{store}")
    many_labels = sorted({l for l in seed_label if l.endswith("/" + store)})
    for ml in many_labels:
        many = med(ml)
        if few and many:
            n = ml.split("/")[0][4:]
            targets.append((f"{int(n):,} keys ≥ 0.9× 10 keys ({store}; {fmt(many)} vs {fmt(few)} req/s)", f"{many / few:.2f}×", many / few >= 0.9))

seeds = [r for r in rows if r.get("label", "").startswith("seed/")]
if seeds:
    p("")
    p("Stores with many keys (`keygate seed`, five keys per team; the load spreads over the recorded keys, "
      "round-robin). Store bytes: the bbolt file's size, or Redis's `used_memory` after the seed minus before. "
      "Start: from launching `serve` to the first 200 from `/readyz`. RSS of `serve` after start and after "
      "the load. Teams: one `GET /v1/teams?limit=100` (and with `prefix=bench-1234`), median of 5. "
      "First uses: one run on the fresh process, each request a key not used before; req/s: the runs after it "
      "(and after a pass over every loaded key when SCALE_WARM is set). Both stores are served at once and "
      "measured in alternation, a run of the 10-key store then one of the many-key store (the other serve "
      "stopped meanwhile), and req/s is the median of each store's runs, so that a faster or slower spell "
      "of the machine falls on both.")
    p("")
    p("| store | keys | keys loaded | seed s | store bytes/key | start s | RSS start MiB | RSS after load MiB | of it not file-backed MiB | teams ms | teams prefix ms | first uses req/s | req/s |")
    p("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in seeds:
        store = r["label"].split("/")[1]
        n = r["keys"]
        p(f"| {store} | {n:,} | {r['used']:,} | {r['seed_s']} | {r['store_bytes'] / n:,.0f} | {r['ready_s']} | "
          f"{r['rss_start_kb'] / 1024:,.0f} | {fmt(r['rss_load_kb'] / 1024 or None)} | {fmt(r.get('anon_load_kb', 0) / 1024 or None)} | {r['teams_ms']} | {r['teams_prefix_ms']} | "
          f"{fmt(med(f'cold{n}/{store}'))} | {fmt(med(f'keys{n}/{store}'))} |")
    for store in ("bbolt", "redis"):
        few = [r["rps"] for r in rows if r.get("label") == f"keys10/{store}"]
        for ml in sorted({l for l in seed_label if l.endswith("/" + store)}):
            many = [r["rps"] for r in rows if r.get("label") == ml]
            if few and len(few) == len(many):
                p("")
                p(f"Runs in alternation, {store}, 10 keys / {int(ml.split('/')[0][4:]):,} keys (req/s): " +
                  ", ".join(f"{fmt(a)} / {fmt(b)} ({b / a:.2f}×)" for a, b in zip(few, many)) + ".")
    for r in seeds:
        store, n = r["label"].split("/")[1], r["keys"]
        if n >= 100000:
            targets.append((f"/readyz within 1 s of start with {n:,} keys ({store})", f"{r['ready_s']} s", r["ready_s"] <= 1))
            targets.append((f"GET /v1/teams ≤ 50 ms per page at {n:,} keys ({store})", f"{max(r['teams_ms'], r['teams_prefix_ms'])} ms",
                            max(r["teams_ms"], r["teams_prefix_ms"]) <= 50))
            if store == "redis":
                bpk = r["store_bytes"] / n
                targets.append((f"Redis memory ≤ 300 bytes per key at {n:,} keys", f"{bpk:,.0f} B", bpk <= 300))

for r in rows:
    if r.get("label") == "cluster-teams":
        worst = max(r["teams_ms"], r["teams_prefix_ms"])
        targets.append((f"GET /v1/teams ≤ 50 ms per page at {r['keys']:,} keys (3-master Redis Cluster; "
                        f"{r['teams_ms']} ms, with a prefix {r['teams_prefix_ms']} ms)", f"{worst} ms", worst <= 50))

c1, c3 = med("cluster1"), med("cluster3")
if c1 and c3:
    p("")
    p("Three keygate instances on one 3-master Redis Cluster (loopback, same cores) against one instance on it, "
      "alternating, median of the runs; one `keygate bench` loads the three in turn (`--also-url`, 64 connections in all). "
      "Server CPU is the first instance's only.")
    p("")
    p("| instances | req/s | p99 ms | errors |")
    p("| ---: | ---: | ---: | ---: |")
    p(f"| 1 | {fmt(c1)} | {fmt(med('cluster1', key='p99_ms'), 1)} | {errors('cluster1')} |")
    p(f"| 3 | {fmt(c3)} | {fmt(med('cluster3', key='p99_ms'), 1)} | {errors('cluster3')} |")
    runs1 = [round(r["rps"]) for r in rows if r.get("label") == "cluster1"]
    runs3 = [round(r["rps"]) for r in rows if r.get("label") == "cluster3"]
    p("")
    p(f"Runs: one instance {runs1}, three {runs3} req/s.")
    targets.append((f"3 instances ≥ 0.9× 1 instance on the 3-master cluster ({fmt(c3)} vs {fmt(c1)} req/s)", f"{c3 / c1:.2f}×", c3 / c1 >= 0.9))
for r in rows:
    if r.get("label") == "cluster-delete":
        felt = r.get("felt_ms")
        targets.append(("a deletion through one instance refused by the other two, under load, within 1 s",
                        f"{felt} ms" if felt is not None else "not felt in 10 s", felt is not None and felt <= 1000))

vc = [r for r in rows if r.get("label") == "verify/BenchmarkVerifyCached"]
vu = [r for r in rows if r.get("label") == "verify/BenchmarkVerify"]
if vc:
    c = vc[0]
    un = f" (verified anew: {vu[0]['ns_op'] / 1000:.1f} µs, {vu[0]['allocs_op']:.0f} allocs)" if vu else ""
    targets.append((f"verify: a cached token ≤ 5 µs{un}", f"{c['ns_op'] / 1000:.2f} µs", c["ns_op"] <= 5000))
    targets.append(("verify: a cached token ≤ 5 allocations", f"{c['allocs_op']:.0f}", c["allocs_op"] <= 5))

jk, jm = med("jwks/keygate"), med("jwks/minimal")
tok = med("bbolt/ES256", 64)
if jk and tok:
    targets.append((f"JWKS ≥ 3× token endpoint ({fmt(jk)} vs {fmt(tok)} req/s)", f"{jk / tok:.1f}×", jk / tok >= 3))
if jk and jm:
    targets.append((f"JWKS ≥ 0.9× minimal net/http handler, same bytes ({fmt(jm)} req/s)", f"{jk / jm:.2f}×", jk / jm >= 0.9))

for r in rows:
    if r.get("label") == "rss":
        g = (r["rss1_kb"] - r["rss0_kb"]) / r["rss0_kb"]
        targets.append((f"RSS flat over {r['duration']} ({r['requests']:,} tokens): "
                        f"{r['rss0_kb'] / 1024:.1f} → {r['rss1_kb'] / 1024:.1f} MiB", f"{g * 100:+.1f} %", g <= 0.10))

if any(r.get("label", "").startswith("wrk/") for r in rows):
    p("")
    p("Cross-check with wrk (ES256, 64 connections; wrk costs the shared cores less per request than "
      "`keygate bench`, so keygate's overhead over the floor shows more plainly):")
    p("")
    p("| server | req/s | ratio to floor | p50 ms | p99 ms | errors |")
    p("| --- | ---: | ---: | ---: | ---: | ---: |")
    wf = med("wrk/floor")
    for name in ("floor", "bbolt", "redis", "policy"):
        rps = med(f"wrk/{name}")
        if rps is None:
            continue
        if name == "policy" and wf:
            targets.append((f"wrk: keygate/bbolt, a key with every policy set, ≥ 0.9× floor req/s (ES256, 64 conns)", f"{rps / wf:.2f}×", rps / wf >= 0.9))
        p(f"| {name} | {fmt(rps)} | {fmt(rps / wf if rps and wf else None, 2)} | {fmt(med(f'wrk/{name}', key='p50_ms'), 2)} | "
          f"{fmt(med(f'wrk/{name}', key='p99_ms'), 1)} | {errors(f'wrk/{name}') if name != 'floor' else '—'} |")

p("")
p("## Targets")
p("")
p("| target | measured | |")
p("| --- | ---: | --- |")
for name, val, ok in targets:
    p(f"| {name} | {val} | {verdict(ok)} |")
print("\n".join(out))
