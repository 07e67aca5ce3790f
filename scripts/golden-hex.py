#!/usr/bin/env python3
"""Regenerates the ```hex golden:NAME blocks of repo-format.md (annotated CBOR, and sealed bytes with
the fixed test key and nonces via python3-cryptography's AESGCMSIV, an implementation independent of
snap's). Values only snap computes (keyed BLAKE3 blob id, gear seed, argon2id key) come from
`cargo test --release --test integration -- --ignored --nocapture golden_print_values`.

Usage: scripts/golden-hex.py BLOB_ID SEED KDF_KEY   (rewrites the blocks in repo-format.md in place)
"""
import struct
def head(major, n):
    if n < 24: return bytes([major<<5 | n])
    if n < 256: return bytes([major<<5 | 24, n])
    if n < 65536: return bytes([major<<5 | 25]) + n.to_bytes(2,'big')
    if n < 2**32: return bytes([major<<5 | 26]) + n.to_bytes(4,'big')
    return bytes([major<<5 | 27]) + n.to_bytes(8,'big')
class T(str): pass      # text
class B(bytes): pass    # bytes
class F(float): pass
def enc(v, ind, lines, note=None):
    pad = '  '*ind
    def emit(b, c):
        lines.append((pad + b.hex(' ', 1) if len(b) <= 16 else None, b, pad, c))
    if v is None: emit(b'\xf6', note or 'null')
    elif v is True: emit(b'\xf5', note or 'true')
    elif v is False: emit(b'\xf4', note or 'false')
    elif isinstance(v, F):
        # ciborium writes the shortest of half/single/double that holds the value exactly
        enc16 = enc32 = None
        try:
            h = struct.pack('>e', v)
            if struct.unpack('>e', h)[0] == v: enc16 = b'\xf9' + h
        except OverflowError: pass
        f = struct.pack('>f', v)
        if struct.unpack('>f', f)[0] == v: enc32 = b'\xfa' + f
        b = enc16 or enc32 or (b'\xfb' + struct.pack('>d', v))
        kind = {3: 'half', 5: 'single', 9: 'double'}[len(b)]
        emit(b, note or f'{v} ({kind} float)')
    elif isinstance(v, int):
        if v >= 0: emit(head(0, v), note or f'{v}')
        else: emit(head(1, -1 - v), note or f'{v}')
    elif isinstance(v, T) or isinstance(v, str):
        b = v.encode(); emit(head(3, len(b)) + b, note or f'"{v}"')
    elif isinstance(v, (bytes, B)):
        bv = bytes(v)
        shown = f' "{bv.decode()}"' if bv and len(bv) <= 24 and all(32 <= c < 127 for c in bv) else ''
        emit(head(2, len(v)) + bv, note or f'bytes({len(v)}){shown}')
    elif isinstance(v, list):
        emit(head(4, len(v)), note or f'array({len(v)})')
        for x in v: enc(x, ind+1, lines)
    elif isinstance(v, dict):
        emit(head(5, len(v)), note or f'map({len(v)})')
        for k, x in v.items():
            kb = k.encode()
            if isinstance(x, (dict, list)):
                enc(T(k), ind+1, lines)
                enc(x, ind+1, lines)
            else:
                # key and value on one line
                l1 = []; enc(T(k), 0, l1); l2 = []; enc(x, 0, l2)
                b = l1[0][1] + l2[0][1]
                lines.append((None, b, '  '*(ind+1), f'"{k}": ' + l2[0][3]))
    return lines
def render(v):
    out = []
    data = b''
    for _, b, pad, c in enc(v, 0, []):
        data += b
        h = b.hex(' ', 1)
        # wrap long byte runs at 16 bytes per line
        chunks = [b[i:i+16] for i in range(0, len(b), 16)]
        for i, ch in enumerate(chunks):
            txt = pad + ch.hex(' ', 1)
            out.append(txt.ljust(60) + ('# ' + c if i == 0 else '#   …'))
    return '\n'.join(out), data
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
import json, os, sys
vals = {'blob_id': sys.argv[1], 'seed': sys.argv[2], 'kdf_key': sys.argv[3]}
ENC = bytes(range(0, 32))
def H(k): return b'SNAP' + bytes([k, 1, 0, 0])
def nonce(k): return bytes([0xA0 + k] * 12)
def seal(key, k, ad, plain):
    n = nonce(k)
    return n + AESGCMSIV(key).encrypt(n, plain, ad)
def hexlines(b, pad='', first=None):
    out = []
    for i in range(0, len(b), 16):
        out.append((pad + b[i:i+16].hex(' ', 1)).ljust(60) + ('# ' + first if (i == 0 and first) else '#   …' if first else ''))
    return out
def block(name, lines):
    return '```hex golden:' + name + '\n' + '\n'.join(l.rstrip() for l in lines) + '\n```\n'
def sealed_file_block(name, k, plain, what):
    s = seal(ENC, k, H(k), plain)
    lines = [H(k).hex(' ', 1).ljust(60) + f'# H({k})',
             s[:12].hex(' ', 1).ljust(60) + f'# nonce = {0xA0+k:02x} × 12 (fixed for this example; snap draws it at random)']
    body = s[12:-16]
    lines += hexlines(body, '', f'AES-256-GCM-SIV ciphertext of {what} ({len(body)} bytes)')
    lines += [s[-16:].hex(' ', 1).ljust(60) + '# tag']
    return block(name, lines), H(k) + s
out = {}
# envelope headers
names = ['config','key','snapshot','lock','pack','pack header','data blob','tree blob']
out['envelope-headers'] = block('envelope-headers', [H(k).hex(' ',1).ljust(60) + f'# kind {k}: {names[k-1]}' for k in range(1,9)])
# trees
txt, data = render({'nodes': []})
assert data.hex() == 'a1656e6f64657380'
out['empty-tree'] = block('empty-tree', txt.split('\n'))
node = {'name': B(b'hosts'), 'kind': T('file'), 'mode': 0o100644, 'uid': 0, 'gid': 0, 'size': 4196,
        'mtime': 1732562000123456789, 'ctime': -1000000000, 'inode': 131074, 'dev': 2049, 'nlink': 1,
        'content': [[B(b'\x11'*32), 100], [None, 4096]],
        'xattrs': [[B(b'user.k'), B(b'v')]]}
txt, data = render({'nodes': [node]})
out['tree-one-node'] = block('tree-one-node', txt.split('\n'))
# snapshot
snap = {'time': '2026-11-25T10:00:00.123456789+01:00', 'time_end': '2026-11-25T10:00:01.987654321+01:00',
        'host': 'web1', 'user': 'root', 'paths': ['/etc', '/srv/app'], 'tags': ['daily'], 'kind': 'incremental',
        'parent': B(b'\x33'*32), 'tree': B(b'\x44'*32), 'incomplete': True,
        'errors': [{'path': '/srv/app/locked', 'message': 'Permission denied (os error 13)'}],
        'summary': {'files_new': 2, 'files_changed': 1, 'files_unmodified': 40, 'dirs': 5, 'other_entries': 1,
                    'bytes_read': 5000, 'bytes_total': 1310720, 'blobs_added': 3, 'bytes_added': 2100,
                    'bytes_added_raw': 5000, 'packs_written': 1, 'duration_ms': 1234},
        'program': 'snap 0.1.0',
        'mysql': {'source': 'mysql://backup@db1:3306', 'server': 'MariaDB 10.11.19', 'binlog_file': 'mysql-bin.000042',
                  'binlog_position': 1048576, 'gtid': None, 'lock_ms': F(25.5), 'ddl_lock_ms': F(1234.567),
                  'duration_ms': 90000, 'bytes': 300000000, 'databases': 2, 'tables': 30, 'rows': 1000000}}
txt, snap_plain = render(snap)
out['snapshot-plain'] = block('snapshot-plain', txt.split('\n'))
# binlog archive record (§21)
rec = {'source': 'mysql://backup@db1:3306', 'server_id': 1, 'server_uuid': None,
       'segments': [{'file': 'binlog.000007', 'start': 0, 'end': 1234, 'path': 'binlog/binlog.000007/0',
                     'first_time': 1796130660, 'last_time': 1796130679, 'gtid_first': '0-1-11',
                     'gtid_last': '0-1-14', 'gtid_state': '0-1-14', 'gtid_list': '0-1-10', 'events': 21,
                     'transactions': 4, 'ended': True, 'next': 'binlog.000008'}],
       'gaps': [{'kind': 'purged', 'after': 'binlog.000005:8810', 'before': 'binlog.000007:4',
                 'detail': 'binlog.000006 was purged before it was archived', 'detected': '2026-11-25T10:00:00Z'}]}
txt, _ = render(rec)
out['binlog-record'] = block('binlog-record', txt.split('\n'))
# lock
lock = {'host': 'web1', 'pid': 4242, 'user': 'root', 'time': '2026-11-25T09:00:00+00:00', 'exclusive': False}
txt, lock_plain = render(lock)
out['lock-plain'] = block('lock-plain', txt.split('\n'))
out['lock-file'], _ = sealed_file_block('lock-file', 4, lock_plain, 'lock-plain')
# config
seed = int(vals['seed'])
cfg = {'version': 1, 'id': B(b'\x55'*32),
       'chunker': {'min': 131072, 'avg': 524288, 'max': 2097152, 'seed': seed},
       'db_chunker': {'min': 8192, 'avg': 32768, 'max': 131072, 'seed': seed},
       'compression': 3, 'pack_size': 8388608, 'created': '2026-11-25T09:00:00+00:00'}
txt, cfg_plain = render(cfg)
txt = txt.replace(f'# "seed": {seed}', f'# "seed": {seed} = derive_u64("snap chunker gear seed")')
out['config-plain'] = block('config-plain', txt.split('\n'))
out['config-file'], _ = sealed_file_block('config-file', 1, cfg_plain, 'config-plain')
# key file
kdf_key = bytes.fromhex(vals['kdf_key'])
salt = b'snap golden salt'
sealed = seal(kdf_key, 2, H(2) + salt, bytes(range(64)))
kf = {'kdf': 'argon2id', 'memory_kib': 19456, 'iterations': 1, 'lanes': 1, 'salt': B(salt),
      'host': 'web1', 'user': 'root', 'created': '2026-11-25T09:00:00+00:00', 'sealed': B(sealed)}
txt, kf_plain = render(kf)
lines = [H(2).hex(' ', 1).ljust(60) + '# H(2); the CBOR below is not sealed'] + txt.split('\n')
out['key-file'] = block('key-file', lines)
# append-only key file: the same, flagged, and the flag bound into the seal's AD
sealed_ao = seal(kdf_key, 2, H(2) + salt + b'append-only', bytes(range(64)))
kf_ao = dict(kf)
kf_ao['sealed'] = B(sealed_ao)
kf_ao['append_only'] = True
txt, _ = render(kf_ao)
lines = [H(2).hex(' ', 1).ljust(60) + '# H(2); the CBOR below is not sealed'] + txt.split('\n')
out['key-file-append-only'] = block('key-file-append-only', lines)
# audit record
audit = {'time': '2026-11-25T09:00:00+00:00', 'action': 'forget', 'key': '66' * 32, 'host': 'web1',
         'user': 'root', 'pid': 4242, 'ok': True, 'summary': {'snapshots_removed': [B(b'\x33' * 32)]}}
txt, audit_plain = render(audit)
out['audit-plain'] = block('audit-plain', txt.split('\n'))
out['audit-file'], _ = sealed_file_block('audit-file', 10, audit_plain, 'audit-plain')
# pack
blob_id = bytes.fromhex(vals['blob_id'])
plain = b'hello, snap\n'
sb = seal(ENC, 7, H(7) + blob_id, plain)
entry = bytes([7, 0]) + (len(sb)).to_bytes(4, 'little') + len(plain).to_bytes(4, 'little') + blob_id
hdr_plain = (1).to_bytes(4, 'little') + entry
lines = ['01 00 00 00'.ljust(60) + '# count = 1',
         '07'.ljust(60) + '# entry 0: type 7 (data blob)',
         '00'.ljust(60) + '#   compression 0 (none)',
         len(sb).to_bytes(4,'little').hex(' ',1).ljust(60) + f'#   length = {len(sb)} sealed bytes (12 + {len(plain)} + 16)',
         len(plain).to_bytes(4,'little').hex(' ',1).ljust(60) + f'#   raw_len = {len(plain)}']
lines += hexlines(blob_id, '', '  blob id = keyed BLAKE3(id key, "hello, snap\\n")')
out['pack-header-plain'] = block('pack-header-plain', lines)
sh = seal(ENC, 6, H(6), hdr_plain)
lines = [H(5).hex(' ', 1).ljust(60) + '# H(5)',
         sb[:12].hex(' ', 1).ljust(60) + '# blob 0 at offset 8: nonce a7 × 12']
lines += hexlines(sb[12:-16], '', '  ciphertext of "hello, snap\\n", AD = H(7) ‖ blob id')
lines += [sb[-16:].hex(' ', 1).ljust(60) + '#   tag',
          sh[:12].hex(' ', 1).ljust(60) + f'# sealed header at offset {8+len(sb)}: nonce a6 × 12']
lines += hexlines(sh[12:-16], '', '  ciphertext of pack-header-plain, AD = H(6)')
lines += [sh[-16:].hex(' ', 1).ljust(60) + '#   tag',
          len(sh).to_bytes(4,'little').hex(' ',1).ljust(60) + f'# trailer: S = {len(sh)} (42·1 + 32); file length {8+len(sb)+len(sh)+4}']
out['pack'] = block('pack', lines)
blocks = out
import re
p = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'repo-format.md')
s = open(p).read()
def has(name): return ('```hex golden:' + name + '\n') in s
def put_before(anchor, text):
    global s
    assert s.count(anchor) == 1, anchor
    s = s.replace(anchor, text + '\n' + anchor)
intro = {
 'envelope-headers': '''**Worked examples.** Fenced blocks opened with `hex golden:NAME` in this document are exact bytes:
hex digits, whitespace, and `#` comments to the end of a line. `tests/integration/golden.rs` reads
them from this file, decodes each through the library to the values the text describes, and
encodes those values back to the same bytes, so this document and the code cannot drift apart.
Sealed examples use the fixed test master key `enc` = `00 01 02 … 1f`, `id` = `20 21 … 3f`, and
for an object of kind `k` the fixed nonce `(A0 + k)` repeated 12 times (snap itself draws every
nonce at random). The eight headers:
''',
 'key-file': '''Worked example (§2): password `golden password`, salt `snap golden salt`, m = 19456 KiB (the floor),
t = 1, p = 1; `sealed` holds the fixed master key `00 01 … 3f` under the argon2id key, nonce `a2 × 12`,
AD = `H(2) ‖ salt`:
''',
 'config-plain': '''Worked example (§2): the config of the fixed test key, plaintext then file:
''',
 'pack-header-plain': '''Worked example (§2): a pack holding one data blob, `hello, snap\\n` (12 bytes, too short to compress).
The header plaintext, then the whole 126-byte pack file:
''',
 'empty-tree': '''Worked examples (§2): the empty tree, and a tree with one file node (a 100-byte data extent, then a
4096-byte hole; one xattr; `rdev`, `target` and `subtree` omitted; a negative `ctime`):
''',
 'snapshot-plain': '''Worked example (§2): the plaintext of an incremental snapshot with a parent, one source error and a
database dump (floats are written in the shortest exact form: `lock_ms` 25.5 as a half float,
`ddl_lock_ms` as a double). Sealed, it is `H(3) ‖ nonce ‖ ciphertext ‖ tag` exactly as the lock and
config examples show.
''',
 'lock-plain': '''Worked example (§2), plaintext then file:
''',
 'key-file-append-only': '''The same key file made append-only: `"append_only": true` is the tenth entry, and `sealed` is the same
master key under the same argon2id key and nonce, with AD = `H(2) ‖ salt ‖ "append-only"`:
''',
 'audit-plain': '''Worked example (§2): the record of a `forget` that removed one snapshot (`33 × 32`), by key
`66…66` (64 hex digits), plaintext then file:
''',
}
places = [
 (['envelope-headers'], '## 3. Crypto'),
 (['key-file'], '## 5. Config'),
 (['key-file-append-only'], '## 5. Config'),
 (['config-plain', 'config-file'], '## 6. Blobs'),
 (['pack-header-plain', 'pack'], '## 8. Trees and nodes'),
 (['empty-tree', 'tree-one-node'], 'Root tree of a snapshot: an absolute source path'),
 (['snapshot-plain'], '## 10. Locks'),
 (['lock-plain', 'lock-file'], '## 11. Write order and crash safety'),
 (['audit-plain', 'audit-file'], '## 20. Append-only sessions'),
 (['binlog-record'], 'Reading (`database::binlog::Chain`)'),
]
for names, anchor in places:
    if all(has(n) for n in names):
        for n in names:
            s = re.sub(r'```hex golden:' + re.escape(n) + r'\n.*?```\n', lambda m: blocks[n], s, flags=re.S)
        continue
    text = intro[names[0]] + '\n' + '\n'.join(blocks[n] for n in names)
    put_before(anchor, text)
open(p, 'w').write(s)
