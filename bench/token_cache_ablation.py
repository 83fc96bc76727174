#!/usr/bin/env python3
# Makes ablated copies of a seqrec token cache (stdlib only): zero = token keys/values set to 0;
# shuffle = user i gets user i+1's keys/values (its own old-item hash, distances and timestamps kept).
# The per-tensor checksums are dropped from the metadata (such files load unverified).
import json, os, shutil, struct, sys
if len(sys.argv) != 4 or sys.argv[3] not in ("zero", "shuffle"):
    sys.exit("usage: token_cache_ablation.py CACHE_DIR OUT_DIR zero|shuffle")
src, dst, mode = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(dst, exist_ok=True)
man = json.load(open(os.path.join(src, 'manifest.json')))
shutil.copy(os.path.join(src, 'manifest.json'), os.path.join(dst, 'manifest.json'))
for shard in man['shards']:
    f = open(os.path.join(src, shard), 'rb'); n = struct.unpack('<Q', f.read(8))[0]
    h = json.loads(f.read(n)); data = bytearray(f.read())
    h['__metadata__'].pop('seqrec.checksums', None)
    for k, v in h.items():
        if k == '__metadata__' or not (k.startswith('keys.') or k.startswith('values.')): continue
        a, b = v['data_offsets']; users = v['shape'][0]; row = (b - a) // users
        if mode == 'zero':
            data[a:b] = bytes(b - a)
        else:
            block = bytes(data[a:b])
            data[a:b] = block[row:] + block[:row]
    hb = json.dumps(h, separators=(',', ':')).encode()
    hb += b' ' * ((8 - len(hb) % 8) % 8)
    with open(os.path.join(dst, shard), 'wb') as g:
        g.write(struct.pack('<Q', len(hb))); g.write(hb); g.write(data)
