// DuckDB reference for bench/prepare_scale.sh: read a CSV or Parquet interaction file and sort it
// by (user, timestamp) into a table, on 2 threads. Prints {"rows", "seconds"} (work only, after
// start-up). Usage: node duckdb_prepare.mjs FILE [--to-parquet OUT]
import { DuckDBInstance } from '@duckdb/node-api';
const [,, file, flag, out] = process.argv;
const inst = await DuckDBInstance.create(':memory:', { threads: '2' });
const con = await inst.connect();
const reader = file.endsWith('.parquet') ? `read_parquet('${file}')` : `read_csv('${file}')`;
if (flag === '--to-parquet') {
  // The Parquet twin of a CSV, as DuckDB writes it (snappy, its default row groups).
  await con.run(`COPY (SELECT * FROM ${reader}) TO '${out}' (FORMAT parquet)`);
  process.exit(0);
}
const t0 = performance.now();
await con.run(`CREATE TABLE t AS SELECT * FROM ${reader} ORDER BY user_id, timestamp`);
const t1 = performance.now();
const r = await con.runAndReadAll('SELECT count(*) FROM t');
console.log(JSON.stringify({ rows: Number(r.getRows()[0][0]), seconds: (t1 - t0) / 1000 }));
