//! Per-stage throughput of the backup pipeline, in MB/s: chunking, keyed hashing, compression
//! (compressible text and incompressible random data, where the probe should make it nearly free)
//! and sealing.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use snap::blob;
use snap::chunker::ChunkerParams;
use snap::crypto::MasterKey;

fn data(len: usize, compressible: bool) -> Vec<u8> {
    let mut x: u64 = 0x243F6A8885A308D3;
    let mut out = Vec::with_capacity(len);
    let words = [
        &b"order "[..],
        b"customer ",
        b"invoice ",
        b"payment ",
        b"status=ok ",
        b"1234 ",
        b"\n",
    ];
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if compressible {
            out.extend_from_slice(words[(x % words.len() as u64) as usize]);
        } else {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

fn stages(c: &mut Criterion) {
    let key = MasterKey::from_parts([1; 32], [2; 32]);
    let big = data(64 << 20, false);
    let text = data(4 << 20, true);
    let chunk = data(1 << 20, false);
    let params = ChunkerParams::default_with_seed(42);

    let mut g = c.benchmark_group("stages");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.bench_function("chunk_fastcdc_64MiB", |b| {
        b.iter(|| {
            params
                .chunks(&big[..])
                .map(|c| c.map(|c| c.len()).unwrap_or(0))
                .sum::<usize>()
        })
    });
    g.throughput(Throughput::Bytes(chunk.len() as u64));
    g.bench_function("hash_keyed_blake3_1MiB", |b| b.iter(|| key.blob_id(&chunk)));
    g.bench_function("compress_zstd3_random_1MiB", |b| {
        b.iter(|| blob::compress(&chunk, 3))
    });
    g.bench_function("seal_aes256gcmsiv_1MiB", |b| {
        b.iter(|| key.seal(b"ad", &chunk))
    });
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("compress_zstd3_text_4MiB", |b| {
        b.iter(|| blob::compress(&text, 3))
    });
    g.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
