// The program behind burn.samply.json: the main thread burns CPU in
// spin_alpha, "burn-beta" in spin_beta, and "sleeper" works 5 ms of every
// 50 in spin_gamma. Recorded with samply 0.13.1:
//   rustc -O -g --edition 2021 burn.rs && ./burn 4 &
//   samply record --save-only --unstable-presymbolicate --rate 499 \
//       -o burn.json -p $(pgrep -x burn)    # then Ctrl+C after ~1.5 s
// and burn.json, burn.syms.json renamed to burn.samply.json,
// burn.samply.syms.json (the sidecar's name follows the profile's).
use std::hint::black_box;
use std::time::{Duration, Instant};

#[inline(never)]
fn spin_alpha(n: u64) -> u64 {
    let mut x = 1u64;
    for i in 0..n {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(black_box(i));
    }
    x
}

#[inline(never)]
fn spin_beta(n: u64) -> u64 {
    let mut x = 7u64;
    for i in 0..n {
        x ^= black_box(i).rotate_left(13).wrapping_mul(31);
    }
    x
}

#[inline(never)]
fn spin_gamma(n: u64) -> u64 {
    let mut x = 3u64;
    for i in 0..n / 20 {
        x = x.wrapping_add(black_box(i) * 3);
    }
    x
}

fn run(until: Instant, f: fn(u64) -> u64) -> u64 {
    let mut acc = 0;
    while Instant::now() < until {
        acc ^= f(200_000);
    }
    acc
}

fn main() {
    let secs: f64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let beta = std::thread::Builder::new()
        .name("burn-beta".into())
        .spawn(move || run(until, spin_beta))
        .unwrap();
    // Mostly asleep: 5 ms of work every 50 ms, so samply also records it
    // off the CPU.
    let sleeper = std::thread::Builder::new()
        .name("sleeper".into())
        .spawn(move || {
            while Instant::now() < until {
                run(Instant::now() + Duration::from_millis(5), spin_gamma);
                std::thread::sleep(Duration::from_millis(45));
            }
        })
        .unwrap();
    let a = run(until, spin_alpha);
    sleeper.join().unwrap();
    println!("{}", a ^ beta.join().unwrap());
}
