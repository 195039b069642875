//! Kernel throughput in input megavoxels per second (median of 5 runs, or of
//! TB_BENCH_RUNS), without the
//! Python side. `cargo bench --bench kernels [-- FILTER]`; TINYBRAIN_NUM_THREADS picks
//! the thread count (default: one per core).

use std::time::Instant;

use ndarray::{ArrayD, IxDyn, ShapeBuilder};
use tinybrain::{downsample, downsample_into, Element, Method};

fn volume<T: Element>(shape: &[usize], value: impl Fn(usize) -> T) -> ArrayD<T> {
    let n: usize = shape.iter().product();
    ArrayD::from_shape_vec(IxDyn(shape).f(), (0..n).map(value).collect()).unwrap()
}

/// CPU time of the whole process (all threads): less sensitive than wall time to other
/// load on the machine.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct we pass.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn hash(i: usize) -> u64 {
    let mut x = i as u64 ^ 0x9E37_79B9_7F4A_7C15;
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn run<T: Element>(name: &str, input: &ArrayD<T>, method: Method, factor: &[usize], mips: usize, sparse: bool) {
    let filter = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    if filter.is_some_and(|f| !name.contains(&f)) {
        return;
    }
    // Outputs are allocated (and their pages touched) once, so the runs time the kernel.
    let mut outputs = downsample(method, input.view(), factor, mips, sparse).unwrap();
    let runs = std::env::var("TB_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5usize)
        .max(1);
    let mut times: Vec<(f64, f64)> = (0..runs)
        .map(|_| {
            let mut views: Vec<_> = outputs.iter_mut().map(|o| o.view_mut()).collect();
            let (start, cpu_start) = (Instant::now(), cpu_seconds());
            downsample_into(method, input.view(), factor, sparse, &mut views).unwrap();
            std::hint::black_box(&views);
            (start.elapsed().as_secs_f64(), cpu_seconds() - cpu_start)
        })
        .collect();
    times.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (wall, cpu) = times[runs / 2];
    let mvx = input.len() as f64 / wall / 1e6;
    let mvx_cpu = input.len() as f64 / cpu / 1e6;
    println!(
        "{name:32} {mvx:7.0} MVx/s wall ({:6.1} ms)  {mvx_cpu:7.0} MVx/s per CPU-second",
        wall * 1e3
    );
}

fn main() {
    println!("threads: {}", tinybrain::num_threads());
    let gray = volume::<u8>(&[1024, 1024, 64], |i| (hash(i) & 0xff) as u8);
    run("avg 2x2x1 u8", &gray, Method::Average, &[2, 2, 1], 1, false);
    run("avg 2x2x1 u8 4 mips", &gray, Method::Average, &[2, 2, 1], 4, false);
    run("avg 2x2x2 u8", &gray, Method::Average, &[2, 2, 2], 1, false);
    run("avg 2x2x1 u8 sparse", &gray, Method::Average, &[2, 2, 1], 1, true);
    let gray16 = volume::<u16>(&[1024, 1024, 64], |i| hash(i) as u16);
    run("avg 2x2x1 u16", &gray16, Method::Average, &[2, 2, 1], 1, false);
    let grayf32 = volume::<f32>(&[1024, 1024, 64], |i| (hash(i) % 1000) as f32 * 0.25);
    run("avg 2x2x1 f32", &grayf32, Method::Average, &[2, 2, 1], 1, false);
    let gray_i32 = volume::<i32>(&[1024, 1024, 64], |i| hash(i) as i32);
    run("avg 2x2x1 i32", &gray_i32, Method::Average, &[2, 2, 1], 1, false);
    run("max 2x2x1 u8", &gray, Method::Max, &[2, 2, 1], 1, false);
    run("stride 2x2x1 u8", &gray, Method::Stride, &[2, 2, 1], 1, false);
    let random = volume::<u64>(&[512, 512, 64], |i| hash(i) % 50);
    let blocky = volume::<u64>(&[512, 512, 64], |i| {
        let (x, y, z) = (i % 512, (i / 512) % 512, i / (512 * 512));
        hash(x / 37 + 100 * (y / 29) + 10_000 * (z / 7)) % 1000
    });
    run("mode 2x2x1 u64 random", &random, Method::Mode, &[2, 2, 1], 1, false);
    run("mode 2x2x1 u64 realistic", &blocky, Method::Mode, &[2, 2, 1], 1, false);
    run("mode 2x2x2 u64 random", &random, Method::Mode, &[2, 2, 2], 1, false);
    run("mode 2x2x2 u64 realistic", &blocky, Method::Mode, &[2, 2, 2], 1, false);
    run("mode 3x3x3 u64 realistic", &blocky, Method::Mode, &[3, 3, 3], 1, false);
}
