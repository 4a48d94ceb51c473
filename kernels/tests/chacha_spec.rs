//! The `montecarlo-pi` stream as PROTOCOL.md defines it, checked against the
//! kernel. The ChaCha8 below is written from the page's text alone (no
//! `rand_chacha`, no `grid_kernels::chacha`), the way a third party would
//! write it, so the page and the code are each other's oracle: the test
//! vector constants here are the page's, and the page must still print them.

use grid_kernels::spec::MonteCarloParams;
use grid_kernels::{KernelSpec, TaskOutput, TaskRunner, montecarlo};

const PROTOCOL: &str = include_str!("../../PROTOCOL.md");

// ---- the stream, from PROTOCOL.md ------------------------------------------

/// "expand 32-byte k" as four little-endian words.
const CONSTANTS: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];

/// The 16 output words of block `n` of the stream keyed by `seed`.
fn block(seed: u64, n: u64) -> [u32; 16] {
    let mut input = [0u32; 16];
    input[..4].copy_from_slice(&CONSTANTS);
    // Key words 0 and 1 are the seed's low and high words; 2-7 are 0.
    input[4] = seed as u32;
    input[5] = (seed >> 32) as u32;
    // The 64-bit block counter, low word first; words 14-15, the stream, are 0.
    input[12] = n as u32;
    input[13] = (n >> 32) as u32;

    let mut x = input;
    let qr = |x: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize| {
        x[a] = x[a].wrapping_add(x[b]);
        x[d] = (x[d] ^ x[a]).rotate_left(16);
        x[c] = x[c].wrapping_add(x[d]);
        x[b] = (x[b] ^ x[c]).rotate_left(12);
        x[a] = x[a].wrapping_add(x[b]);
        x[d] = (x[d] ^ x[a]).rotate_left(8);
        x[c] = x[c].wrapping_add(x[d]);
        x[b] = (x[b] ^ x[c]).rotate_left(7);
    };
    for _ in 0..4 {
        qr(&mut x, 0, 4, 8, 12);
        qr(&mut x, 1, 5, 9, 13);
        qr(&mut x, 2, 6, 10, 14);
        qr(&mut x, 3, 7, 11, 15);
        qr(&mut x, 0, 5, 10, 15);
        qr(&mut x, 1, 6, 11, 12);
        qr(&mut x, 2, 7, 8, 13);
        qr(&mut x, 3, 4, 9, 14);
    }
    std::array::from_fn(|i| x[i].wrapping_add(input[i]))
}

/// Sample `k`: (u_2k, u_2k+1), (x, y) and whether it is inside.
fn sample(seed: u64, k: u64) -> ([u64; 2], (f64, f64), bool) {
    let words = block(seed, k / 4);
    let w = |i: u64| u64::from(words[(4 * (k % 4) + i) as usize]);
    let u = [w(0) | w(1) << 32, w(2) | w(3) << 32];
    let f = |u: u64| (u >> 11) as f64 * 2f64.powi(-53);
    let (x, y) = (f(u[0]), f(u[1]));
    (u, (x, y), x * x + y * y <= 1.0)
}

/// The output bytes of task `index` of `tasks`: the split rule, then
/// inside and samples as little-endian u64s.
fn task_output(samples: u64, seed: u64, tasks: u32, index: u32) -> Vec<u8> {
    let b = |k: u32| (u128::from(samples) * u128::from(k) / u128::from(tasks)) as u64;
    let (s0, s1) = (b(index), b(index + 1));
    let inside = (s0..s1).filter(|&k| sample(seed, k).2).count() as u64;
    [inside.to_le_bytes(), (s1 - s0).to_le_bytes()].concat()
}

// ---- the test vector, copied from PROTOCOL.md ------------------------------

const SEED: u64 = 7;
const BLOCK_0_WORDS_0_7: [u32; 8] = [
    0x2c44_ba73,
    0xc39c_a672,
    0xea9d_9d65,
    0x7747_b002,
    0x72a7_fcae,
    0x0173_e28d,
    0x0f02_31c0,
    0x4d26_d3a0,
];
/// (u_2k, u_2k+1, x, y, inside) of samples 0 and 1.
const SAMPLES: [(u64, u64, f64, f64, bool); 2] = [
    (
        0xc39c_a672_2c44_ba73,
        0x7747_b002_ea9d_9d65,
        0.764109042047738,
        0.4659376151199609,
        true,
    ),
    (
        0x0173_e28d_72a7_fcae,
        0x4d26_d3a0_0f02_31c0,
        0.005674514325306634,
        0.3013736978309758,
        true,
    ),
];
/// (samples, seed, tasks, index, inside, task samples).
const TASKS: [(u64, u64, u32, u32, u64, u64); 2] =
    [(1000, 7, 1, 0, 800, 1000), (1000, 7, 3, 1, 265, 333)];

#[test]
fn the_page_prints_the_test_vector_used_here() {
    let words: Vec<String> = BLOCK_0_WORDS_0_7
        .iter()
        .map(|w| format!("{w:08x}"))
        .collect();
    let lines = [
        format!("Block 0, output words 0-7: `{}`", words.join(" ")),
        format!(
            "`u_0 = {:#018x}`, `u_1 = {:#018x}`",
            SAMPLES[0].0, SAMPLES[0].1
        ),
        format!("x = {:?}, y = {:?}: inside.", SAMPLES[0].2, SAMPLES[0].3),
        format!(
            "`u_2 = {:#018x}`, `u_3 = {:#018x}`",
            SAMPLES[1].0, SAMPLES[1].1
        ),
        format!("x = {:?}, y = {:?}: inside.", SAMPLES[1].2, SAMPLES[1].3),
        "1 task: task 0 outputs inside 800".into(),
        "samples 1000 (bytes `20 03 00 00 00 00 00 00 e8 03 00 00 00 00 00 00`)".into(),
        "outputs inside 265, samples 333".into(),
    ];
    // The page wraps lines; compare with whitespace collapsed.
    let page = PROTOCOL.split_whitespace().collect::<Vec<_>>().join(" ");
    for line in lines {
        assert!(page.contains(&line), "PROTOCOL.md no longer says: {line}");
    }
    let constants = CONSTANTS.map(|c| format!("`{c:#010x}`")).join(", ");
    assert!(
        page.contains(&constants),
        "PROTOCOL.md no longer says: {constants}"
    );
    assert_eq!(
        CONSTANTS.map(u32::to_le_bytes).concat(),
        b"expand 32-byte k"
    );
}

#[test]
fn the_written_down_chacha8_gives_the_test_vector() {
    assert_eq!(block(SEED, 0)[..8], BLOCK_0_WORDS_0_7);
    for (k, &(u0, u1, x, y, inside)) in SAMPLES.iter().enumerate() {
        let (u, (sx, sy), s_inside) = sample(SEED, k as u64);
        assert_eq!(u, [u0, u1], "sample {k}");
        assert_eq!(
            (sx.to_bits(), sy.to_bits()),
            (x.to_bits(), y.to_bits()),
            "sample {k}"
        );
        assert_eq!(s_inside, inside, "sample {k}");
    }
}

#[test]
fn the_kernel_gives_the_test_vector_tasks() {
    let mut runner = TaskRunner::new();
    for (samples, seed, tasks, index, inside, task_samples) in TASKS {
        let spec = KernelSpec::MontecarloPi(MonteCarloParams { samples, seed });
        let expected = TaskOutput::Samples {
            inside,
            samples: task_samples,
        };
        assert_eq!(runner.run(&spec, tasks, index).unwrap(), expected);
        assert_eq!(
            task_output(samples, seed, tasks, index),
            expected.to_bytes()
        );
    }
}

#[test]
fn the_kernel_computes_the_written_down_stream() {
    let mut runner = TaskRunner::new();
    for (samples, seed, tasks, index) in [
        // Starts at sample 3, the last of block 0, and ends in block 1.
        (10, 7, 3, 1),
        // Starts at sample 333, the second of block 83.
        (1000, 7, 3, 1),
        (1000, 7, 3, 2),
        // A seed over 2^32 (key word 1) and tasks of ragged starts.
        (100_003, (1 << 53) - 1, 7, 3),
        (100_003, 0x1_0000_0001, 7, 6),
        (20_000, 42, 13, 12),
    ] {
        let spec = KernelSpec::MontecarloPi(MonteCarloParams { samples, seed });
        assert_eq!(
            runner.run(&spec, tasks, index).unwrap().to_bytes(),
            task_output(samples, seed, tasks, index),
            "samples {samples}, seed {seed}, task {index} of {tasks}"
        );
    }
}

#[test]
fn the_counter_high_word_counts_from_sample_2_pow_34() {
    // Block 2^32 - 1 is samples 2^34 - 4 .. 2^34; the next block sets word 13.
    for seed in [7, 2024] {
        for first in [(1 << 34) - 6, (1 << 34) - 1, 1 << 34, (5 << 34) + 2] {
            let count = 24;
            let expected = (first..first + count)
                .filter(|&k| sample(seed, k).2)
                .count() as u64;
            assert_eq!(
                montecarlo::count_inside(seed, first, count),
                expected,
                "seed {seed}, first {first}"
            );
        }
    }
}
