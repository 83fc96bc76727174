"""pandas reference for bench/prepare_scale.sh: read_csv only (the issue's 10x yardstick).
Prints {"rows", "seconds"}."""
import json, sys, time
import pandas as pd
t0 = time.perf_counter()
df = pd.read_csv(sys.argv[1])
print(json.dumps({"rows": len(df), "seconds": time.perf_counter() - t0}))
