// polars (nodejs-polars 0.25.2) reference for bench/prepare_scale.sh: read a CSV or Parquet
// interaction file and sort it by (user, timestamp). Prints {"rows", "seconds"} (work only).
import pl from 'nodejs-polars';
const [,, file] = process.argv;
const t0 = performance.now();
const df = (file.endsWith('.parquet') ? pl.readParquet(file) : pl.readCSV(file)).sort(['user_id', 'timestamp']);
const t1 = performance.now();
console.log(JSON.stringify({ rows: df.height, seconds: (t1 - t0) / 1000 }));
