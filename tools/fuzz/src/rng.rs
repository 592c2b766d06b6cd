//! A tiny deterministic PRNG (xorshift64*), seeded per execution so that any input can be
//! regenerated from `(seed, index)` alone, whatever the thread that ran it.

pub struct Rng(u64);

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// The generator of execution `index` of a run seeded with `seed`.
    pub fn for_exec(seed: u64, index: u64) -> Rng {
        Rng(splitmix(seed ^ splitmix(index)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n` > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// `true` once in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A length that is usually small and sometimes large: `0..=max` on a log scale.
    pub fn len_log(&mut self, max: usize) -> usize {
        let bits = usize::BITS - max.leading_zeros();
        let cap = (1usize << self.below(bits as usize + 1)).min(max + 1);
        self.below(cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_per_seed_and_index() {
        let a: Vec<u64> = (0..4).map(|_| Rng::for_exec(7, 3).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(
            Rng::for_exec(7, 3).next_u64(),
            Rng::for_exec(7, 4).next_u64()
        );
        assert_ne!(
            Rng::for_exec(7, 3).next_u64(),
            Rng::for_exec(8, 3).next_u64()
        );
    }

    #[test]
    fn ranges_stay_in_bounds() {
        let mut r = Rng::for_exec(1, 1);
        for _ in 0..10_000 {
            assert!(r.below(5) < 5);
            let v = r.range(3, 9);
            assert!((3..=9).contains(&v));
            assert!(r.len_log(1000) <= 1000);
        }
    }
}
