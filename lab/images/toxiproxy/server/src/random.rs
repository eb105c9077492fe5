//! One process-wide random source, seedable with `-seed` like Toxiproxy's global math/rand.

use std::sync::{Mutex, OnceLock};

static RNG: OnceLock<Mutex<fastrand::Rng>> = OnceLock::new();

fn rng() -> &'static Mutex<fastrand::Rng> {
    RNG.get_or_init(|| Mutex::new(fastrand::Rng::new()))
}

pub fn seed(seed: u64) {
    *rng().lock().unwrap_or_else(|e| e.into_inner()) = fastrand::Rng::with_seed(seed);
}

/// Uniform in [0, 1), as Go's rand.Float32.
pub fn unit_f32() -> f32 {
    rng().lock().unwrap_or_else(|e| e.into_inner()).f32()
}

/// Uniform in [0, n) for n > 0, as Go's rand.Int63n; 0 when n <= 0.
pub fn below(n: i64) -> i64 {
    if n <= 0 {
        return 0;
    }
    rng().lock().unwrap_or_else(|e| e.into_inner()).i64(0..n)
}
