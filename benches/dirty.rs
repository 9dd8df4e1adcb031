//! Benches of the dirty loop, each pattern with and without verification and
//! latency recording, next to a bare 4 KiB-stride store loop compiled here
//! (the peer), then a side-by-side ratio report and thread scaling.
//!
//! `cargo bench --bench dirty` (add `-- --quick` for a short run). The ratio
//! report alternates ours and the peer in the same process, so machine noise
//! hits both alike; compare ratios, not absolute figures.

use std::hint::black_box;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use migmon::mem::{
    prefault, DirtyConfig, DirtyWorkload, Kernel, KernelEnv, PageSize, Pattern, Region,
};
use migmon::pace::StopFlag;

const REGION_MB: u64 = 1024;
const STEP: usize = 4096;

fn region() -> Region {
    let r = Region::map(REGION_MB << 20, PageSize::Small, false).expect("map 1 GB");
    reset(&r);
    r
}

/// Puts every page back to the prefault value a fresh kernel expects.
fn reset(r: &Region) {
    prefault(r, 0, r.steps(), &AtomicU64::new(0), &StopFlag::new());
}

/// The peer: one volatile byte store per 4 KiB page, nothing else.
fn bare_seq(r: &Region, value: u8) {
    let base = r.as_ptr();
    for i in 0..r.steps() as usize {
        // SAFETY: i < steps: inside the region.
        unsafe { base.add(i * STEP).write_volatile(value) };
    }
}

/// The peer for random: xorshift64 and a modulo, as a C loop would do.
fn bare_random(r: &Region, state: &mut u64, n: u64) {
    let base = r.as_ptr();
    let steps = r.steps();
    let mut x = *state;
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = (x % steps) as usize;
        // SAFETY: i < steps: inside the region.
        unsafe { base.add(i * STEP).write_volatile(x as u8 | 1) };
    }
    *state = x;
}

const KERNELS: [(&str, Pattern, bool, bool); 6] = [
    ("seq", Pattern::Sequential, true, false),
    ("seq_noverify", Pattern::Sequential, false, false),
    ("seq_latency", Pattern::Sequential, true, true),
    ("random", Pattern::Random, true, false),
    ("random_noverify", Pattern::Random, false, false),
    ("random_latency", Pattern::Random, true, true),
];

fn bench_dirty(c: &mut Criterion) {
    let r = region();
    let steps = r.steps();
    let env = KernelEnv::default();
    let mut g = c.benchmark_group("dirty_1GB_pass");
    g.throughput(Throughput::Bytes(steps * STEP as u64));
    g.sample_size(20);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    for (name, pattern, verify, latency) in KERNELS {
        reset(&r);
        let mut k = Kernel::new(&env, &r, pattern, verify, latency);
        g.bench_function(name, |b| {
            b.iter(|| k.run(black_box(steps)).expect("no corruption"))
        });
    }
    let mut v = 2u8;
    g.bench_function("bare_seq", |b| {
        b.iter(|| {
            v = v.wrapping_add(1) | 1;
            bare_seq(&r, black_box(v));
        })
    });
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    g.bench_function("bare_random", |b| {
        b.iter(|| bare_random(&r, &mut x, black_box(steps)))
    });
    g.finish();
}

/// GB/s of one call of `f` that dirties `steps` pages.
fn rate(steps: u64, f: &mut dyn FnMut()) -> f64 {
    let t = Instant::now();
    f();
    (steps * STEP as u64) as f64 / t.elapsed().as_secs_f64() / 1e9
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Ours against the peer, alternating, median of rounds; prints ratios.
fn ratio_report() {
    // Separate regions: the peer's stores must not upset our verification.
    let r = region();
    let peer_r = region();
    let steps = r.steps();
    let env = KernelEnv::default();
    println!("\nratio report (1 GB region, median of 9 alternating rounds, GB/s):");
    let mut v = 2u8;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for (name, pattern, verify, latency) in KERNELS {
        reset(&r);
        let mut k = Kernel::new(&env, &r, pattern, verify, latency);
        let (mut ours, mut peer) = (Vec::new(), Vec::new());
        for _ in 0..9 {
            ours.push(rate(steps, &mut || k.run(steps).expect("no corruption")));
            peer.push(rate(steps, &mut || match pattern {
                Pattern::Random => bare_random(&peer_r, &mut x, steps),
                _ => {
                    v = v.wrapping_add(1) | 1;
                    bare_seq(&peer_r, v)
                }
            }));
        }
        let (o, p) = (median(ours), median(peer));
        let peer_name = if pattern == Pattern::Random {
            "bare_random"
        } else {
            "bare_seq"
        };
        println!(
            "  {name:16} {o:7.1}   {peer_name:12} {p:7.1}   ratio {:.2}x",
            o / p
        );
    }
    drop(r);
    drop(peer_r);

    println!("\nthread scaling (DirtyWorkload, unlimited rate, 2 GB, 2 s each, MB/s):");
    for pattern in [Pattern::Sequential, Pattern::Random] {
        let mut res = Vec::new();
        for threads in [1, 2] {
            let run = DirtyWorkload::start(DirtyConfig {
                size_mb: 2048,
                pattern,
                threads,
                duration_s: Some(2.0),
                interval_s: 0.5,
                ..DirtyConfig::default()
            })
            .expect("start");
            res.push(run.background().wait().expect("run").rate_mb_s);
        }
        println!(
            "  {:10} 1 thread {:9.0}   2 threads {:9.0}   ratio {:.2}x",
            pattern.name(),
            res[0],
            res[1],
            res[1] / res[0]
        );
    }
}

criterion_group!(benches, bench_dirty);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // `cargo bench -- --test` (CI: each bench once, that none rots) skips
    // the seconds-long side-by-side report.
    if !std::env::args().any(|a| a == "--test") {
        ratio_report();
    }
}
