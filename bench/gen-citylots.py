#!/usr/bin/env python3
"""Deterministic citylots-shaped events and rule sets for `evbus-bench match`.

The public citylots benchmark (San Francisco lots as GeoJSON features, ~900
bytes a line, used by aws/event-ruler and quamina) is too big to keep here, so
this generator makes lines of the same shape: a Feature with nested
"properties" (MAPBLKLOT, BLKLOT, BLOCK_NUM, LOT_NUM, FROM_ST, TO_ST, STREET,
ST_TYPE, ODD_EVEN) and a "geometry" with a Polygon (sometimes MultiPolygon)
of [lon, lat, 0] coordinate arrays, plus event-ruler's citylots2
"firstCoordinates" {x, y, z}. Same seed, same bytes.

  gen-citylots.py events --count 200000 --seed 1 --out citylots.jsonl.gz
  gen-citylots.py rules --kind exact --count 1000 --seed 2 --out exact-1000.jsonl

Rule kinds (all drawn from the same value spaces as the events, so a share of
events match): exact, prefix, suffix, equals-ignore-case, numeric,
numeric-coords (numeric on the coordinate arrays), anything-but (with
geometry.type: matches almost every event), anything-but-exact (anything-but
beside a selective exact BLKLOT), wildcard, exists, mixed (a rotation of the
others).

Only the Python standard library is used.
"""
import argparse
import gzip
import json
import random
import sys

SYLLABLES = ["AL", "BER", "CAS", "DEL", "EL", "FOL", "GRAN", "HAR", "IR", "JES", "KEN", "LA",
             "MAR", "NOR", "OAK", "PAC", "QUIN", "RO", "SAN", "TER", "UL", "VAL", "WES", "YOR",
             "ZEN", "MON", "TIC", "LEY", "TON", "VIEW", "WOOD", "LAND", "HILL", "DALE", "MOOR"]
REAL = ["GREENWICH", "CRANLEIGH", "FULTON", "MASON", "MARKET", "MISSION", "VALENCIA", "GEARY",
        "FOLSOM", "HOWARD", "POWELL", "JONES", "TAYLOR", "LEAVENWORTH", "HYDE", "LARKIN",
        "POLK", "VAN NESS", "FRANKLIN", "GOUGH", "OCTAVIA", "LAGUNA", "BUCHANAN", "WEBSTER"]
ST_TYPES = ["ST", "AVE", "WAY", "BLVD", "TER", "CT", "PL", "LN", "DR", None]
N_BLOCKS = 4000
N_LOTS = 60


def streets():
    """A fixed vocabulary of 24 real and 4800 made-up street names."""
    out = list(REAL)
    r = random.Random(12345)
    seen = set(out)
    while len(out) < 4824:
        name = "".join(r.choice(SYLLABLES) for _ in range(r.randint(2, 3)))
        if name not in seen:
            seen.add(name)
            out.append(name)
    return out


STREETS = streets()


def blklot(r):
    return "%04d%03d" % (r.randint(1, N_BLOCKS), r.randint(1, N_LOTS))


def ring(r, lon, lat, n):
    pts = []
    for _ in range(n - 1):
        pts.append([round(lon + r.uniform(-4e-4, 4e-4), 14), round(lat + r.uniform(-4e-4, 4e-4), 14), 0])
    pts.append(list(pts[0]))  # closed ring, as GeoJSON wants
    return pts


def feature(r):
    bl = blklot(r)
    block, lot = bl[:4], bl[4:]
    frm = r.randint(0, 4000)
    street = r.choice(STREETS)
    props = {
        "MAPBLKLOT": bl,
        "BLKLOT": bl,
        "BLOCK_NUM": block,
        "LOT_NUM": lot,
        "FROM_ST": str(frm),
        "TO_ST": str(frm + r.choice([0, 0, 2, 10, 20])),
        "STREET": street,
        "ST_TYPE": r.choice(ST_TYPES),
        "ODD_EVEN": r.choice(["O", "E", None]),
    }
    lon = -122.52 + r.random() * 0.16
    lat = 37.70 + r.random() * 0.11
    if r.random() < 0.1:
        coords = [[ring(r, lon, lat, r.randint(4, 9))], [ring(r, lon + 1e-3, lat, r.randint(4, 9))]]
        gtype = "MultiPolygon"
        first = coords[0][0][0]
    else:
        coords = [ring(r, lon, lat, r.randint(6, 22))]
        gtype = "Polygon"
        first = coords[0][0]
    geom = {"type": gtype, "coordinates": coords,
            "firstCoordinates": {"x": first[0], "y": first[1], "z": 0}}
    return {"type": "Feature", "properties": props, "geometry": geom}


def out_file(path):
    if path in (None, "-"):
        return sys.stdout
    if path.endswith(".gz"):
        return gzip.open(path, "wt", encoding="utf-8", compresslevel=6)
    return open(path, "w", encoding="utf-8")


def gen_events(a):
    r = random.Random(a.seed)
    f = out_file(a.out)
    total = 0
    for _ in range(a.count):
        line = json.dumps(feature(r), separators=(",", ":"))
        total += len(line)
        f.write(line + "\n")
    if f is not sys.stdout:
        f.close()
    print("%d events, %.1f bytes on average" % (a.count, total / max(a.count, 1)), file=sys.stderr)


def mixed_case(r, s):
    return "".join(c.lower() if r.random() < 0.5 else c for c in s)


def rule(kind, i, r, used):
    """The i-th rule of a kind; `used` keeps values distinct where the kind allows."""
    def distinct(make):
        for _ in range(1000):
            v = make()
            if v not in used:
                used.add(v)
                return v
        return make()

    if kind == "exact":
        return {"properties": {"BLKLOT": [distinct(lambda: blklot(r))]}}
    if kind == "prefix":
        return {"properties": {"MAPBLKLOT": [{"prefix": distinct(lambda: blklot(r)[:r.randint(4, 6)])}]}}
    if kind == "suffix":
        return {"properties": {"MAPBLKLOT": [{"suffix": distinct(lambda: blklot(r)[-r.randint(5, 7):])}]}}
    if kind == "equals-ignore-case":
        return {"properties": {"STREET": [{"equals-ignore-case": distinct(lambda: mixed_case(r, r.choice(STREETS)))}]}}
    if kind == "numeric":
        lo = -122.52 + r.random() * 0.16
        return {"geometry": {"firstCoordinates": {"x": [{"numeric": [">", round(lo, 6), "<=", round(lo + 1e-4, 6)]}]}}}
    if kind == "numeric-coords":
        lo = 37.70 + r.random() * 0.11
        return {"geometry": {"coordinates": [{"numeric": [">=", round(lo, 6), "<", round(lo + 1e-5, 6)]}]}}
    if kind == "anything-but":
        return {"properties": {"STREET": [{"anything-but": [r.choice(STREETS), r.choice(STREETS)]}]},
                "geometry": {"type": ["Polygon"]}}
    if kind == "anything-but-exact":
        return {"properties": {"BLKLOT": [distinct(lambda: blklot(r))],
                               "STREET": [{"anything-but": [r.choice(STREETS), r.choice(STREETS)]}]}}
    if kind == "wildcard":
        def make():
            s = r.choice(STREETS)
            k = r.randint(1, len(s) - 1)
            return s[:k] + "*" + s[k + 1:]
        return {"properties": {"STREET": [{"wildcard": distinct(make)}]}}
    if kind == "exists":
        field = ["MAPBLKLOT", "BLKLOT", "ST_TYPE", "ODD_EVEN", "STREET"][i % 5]
        return {"properties": {field: [{"exists": True}]}, "geometry": {"type": [["Polygon", "MultiPolygon"][i % 2]]}}
    raise ValueError(kind)


KINDS = ["exact", "prefix", "suffix", "equals-ignore-case", "numeric", "numeric-coords",
         "anything-but", "anything-but-exact", "wildcard", "exists"]


def gen_rules(a):
    r = random.Random(a.seed)
    f = out_file(a.out)
    used = set()
    for i in range(a.count):
        kind = a.kind if a.kind != "mixed" else KINDS[i % len(KINDS)]
        f.write(json.dumps({"name": "%s-%d" % (kind, i), "pattern": rule(kind, i, r, used)},
                           separators=(",", ":")) + "\n")
    if f is not sys.stdout:
        f.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("events", help="citylots-shaped events, one JSON object per line")
    e.add_argument("--count", type=int, default=100000)
    e.add_argument("--seed", type=int, default=1)
    e.add_argument("--out", help="file (.gz: gzipped); default stdout")
    e.set_defaults(fn=gen_events)
    ru = sub.add_parser("rules", help="a rule set of one operator kind, JSON lines")
    ru.add_argument("--kind", choices=KINDS + ["mixed"], required=True)
    ru.add_argument("--count", type=int, default=1000)
    ru.add_argument("--seed", type=int, default=2)
    ru.add_argument("--out", help="file (.gz: gzipped); default stdout")
    ru.set_defaults(fn=gen_rules)
    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
