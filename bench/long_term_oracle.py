#!/usr/bin/python3
"""Model-free baselines of synth.mode long_term data (docs/benchmarks.md, PerSRec sections).

For every user, the validation target (second to last event) and the test target (last event)
are ranked among all items by counting over the last W events before the target, W = 500 (the
full window of the PerSRec configs) and W = 100 (the recent part):
  copy         the item's own count in the window (ties by training popularity);
  cluster*pop  the count of the item's cluster in the window x the item's training popularity
               (item i is in cluster (i - 1) % C, as the generator assigns them);
  short+long   count over the last 30 events / 30 + lam x count over the window / W, lam in
               {0, 0.3, 1, 3} chosen on the validation targets (the test row uses valid's lam):
               recency and frequency together, for synth.profile_timing throughout.
NDCG@10 averaged over users. Usage: long_term_oracle.py INTERACTIONS_CSV [NUM_CLUSTERS=40 NUM_ITEMS=2000]
"""
import collections
import csv
import math
import sys


def ndcg_at_10(scores, target):
    top = sorted(scores, key=lambda i: -scores[i])[:10]
    return 1 / math.log2(top.index(target) + 2) if target in top else 0.0


def main():
    path = sys.argv[1]
    num_clusters = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    num_items = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    seqs = collections.defaultdict(list)
    with open(path) as f:
        rows = csv.reader(f)
        next(rows)  # item_id,user_id,timestamp; rows per user in time order
        for item, user, _ in rows:
            seqs[user].append(int(item[1:]))
    popularity = collections.Counter()
    for s in seqs.values():
        popularity.update(s[:-2])
    items = range(1, num_items + 1)
    for window in (500, 100):
        per_lam = {}
        for lam in (0.0, 0.3, 1.0, 3.0):
            for split, offset in (("valid", 2), ("test", 1)):
                total = 0.0
                for s in seqs.values():
                    t = len(s) - offset
                    short = collections.Counter(s[max(0, t - 30):t])
                    long = collections.Counter(s[max(0, t - window):t])
                    scores = {i: short[i] / 30 + lam * long[i] / window + 1e-9 * popularity[i] for i in items}
                    total += ndcg_at_10(scores, s[t])
                per_lam[(lam, split)] = total / len(seqs)
        lam = max((0.0, 0.3, 1.0, 3.0), key=lambda x: per_lam[(x, "valid")])
        print("short+long last", window, "lam", lam, {sp: round(per_lam[(lam, sp)], 4) for sp in ("valid", "test")})
    for split, offset in (("valid", 2), ("test", 1)):
        for window in (500, 100):
            total = collections.defaultdict(float)
            for s in seqs.values():
                t = len(s) - offset
                history = s[max(0, t - window):t]
                count = collections.Counter(history)
                clusters = collections.Counter((i - 1) % num_clusters for i in history)
                total["copy"] += ndcg_at_10({i: count[i] + 1e-9 * popularity[i] for i in items}, s[t])
                total["cluster*pop"] += ndcg_at_10(
                    {i: clusters[(i - 1) % num_clusters] * popularity[i] for i in items}, s[t])
            print(split, "last", window, {k: round(v / len(seqs), 4) for k, v in total.items()})


if __name__ == "__main__":
    main()
