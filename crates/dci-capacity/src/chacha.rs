//! The ChaCha20 keystream behind the challenge matrices, computed 16 blocks
//! at a time in SIMD registers (AVX-512 or AVX2 where the CPU has them,
//! chosen at run time; a scalar reference otherwise).
//!
//! It is bit-for-bit the stream of `rand_chacha::ChaCha20Rng` (64-bit block
//! counter, 64-bit stream id) — the tests compare the two on every offset
//! shape — but 3 to 6 times faster than drawing words one at a time, which
//! matters because both sides derive `2n²` words and the checker's share of
//! that is most of its cost (see [`crate::cost`]).

const LANES: usize = 16;
const BLOCK_WORDS: usize = 16;
/// Words produced by one call of the kernel.
const CHUNK_WORDS: usize = LANES * BLOCK_WORDS;

type Lanes = [u32; LANES];
/// 16 blocks, word-major: `chunk[w][l]` is word `w` of the chunk's block `l`.
type Chunk = [Lanes; BLOCK_WORDS];

/// The key and stream a keystream is read from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stream {
    key: [u32; 8],
    stream: u64,
}

impl Stream {
    pub(crate) fn new(seed: &[u8; 32], stream: u64) -> Self {
        let mut key = [0u32; 8];
        for (k, bytes) in key.iter_mut().zip(seed.chunks_exact(4)) {
            *k = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        }
        Stream { key, stream }
    }

    /// Writes matrix entries (`map` of each keystream word, see
    /// [`Entry`]) for words `word_pos .. word_pos + out.len()` into `out`.
    /// Whole aligned chunks go through [`Entry::simd_chunk`] when the CPU
    /// has a kernel for it; the rest through [`Stream::fill_with`].
    pub(crate) fn fill_entries<T: Entry>(&self, word_pos: u128, out: &mut [T]) {
        let chunk = CHUNK_WORDS as u128;
        let head = (((chunk - word_pos % chunk) % chunk) as usize).min(out.len());
        let (start, rest) = out.split_at_mut(head);
        self.fill_with(word_pos, start, T::from_word);
        let mut block = ((word_pos + head as u128) / BLOCK_WORDS as u128) as u64;
        let mut whole = rest.chunks_exact_mut(CHUNK_WORDS);
        for dst in &mut whole {
            let Ok(dst) = <&mut [T; CHUNK_WORDS]>::try_from(dst) else {
                unreachable!("chunks_exact yields whole chunks")
            };
            if !T::simd_chunk(self, block, dst) {
                self.fill_with(u128::from(block) * BLOCK_WORDS as u128, dst, T::from_word);
            }
            block = block.wrapping_add(LANES as u64);
        }
        let tail = whole.into_remainder();
        self.fill_with(u128::from(block) * BLOCK_WORDS as u128, tail, T::from_word);
    }

    /// Writes the keystream words `word_pos .. word_pos + out.len()` through
    /// `map` into `out`.
    pub(crate) fn fill_with<T>(&self, word_pos: u128, out: &mut [T], map: impl Fn(u32) -> T) {
        let mut block = (word_pos / BLOCK_WORDS as u128) as u64;
        let mut skip = (word_pos % BLOCK_WORDS as u128) as usize;
        if skip + out.len() <= CHUNK_WORDS / 4 {
            // A few blocks: one at a time rather than a 16-block chunk.
            let mut done = 0;
            while done < out.len() {
                let words = block_words(&self.key, self.stream, block);
                let take = (BLOCK_WORDS - skip).min(out.len() - done);
                for (o, &w) in out[done..done + take].iter_mut().zip(&words[skip..skip + take]) {
                    *o = map(w);
                }
                done += take;
                skip = 0;
                block = block.wrapping_add(1);
            }
            return;
        }
        let mut chunk = [[0u32; LANES]; BLOCK_WORDS];
        let mut done = 0;
        while done < out.len() {
            self.chunk(block, &mut chunk);
            let take = (CHUNK_WORDS - skip).min(out.len() - done);
            let dst = &mut out[done..done + take];
            if let Ok(dst) = <&mut [T; CHUNK_WORDS]>::try_from(&mut *dst) {
                // The common case, a whole chunk: a fixed-size transpose.
                for (l, block_out) in dst.chunks_exact_mut(BLOCK_WORDS).enumerate() {
                    for (w, o) in block_out.iter_mut().enumerate() {
                        *o = map(chunk[w][l]);
                    }
                }
            } else {
                for (o, j) in dst.iter_mut().zip(skip..) {
                    *o = map(chunk[j % BLOCK_WORDS][j / BLOCK_WORDS]);
                }
            }
            done += take;
            skip = 0;
            block = block.wrapping_add(LANES as u64);
        }
    }

    /// Blocks `first .. first + 16` of the keystream, word-major: word `w`
    /// of block `first + l` is `out[w][l]`, so that each SIMD register of
    /// the vector kernels holds one word of 16 (or 8) blocks.
    fn chunk(&self, first: u64, out: &mut Chunk) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU supports AVX-512F (checked just above).
                #[allow(unsafe_code)]
                unsafe {
                    return x86::chunk_avx512(&self.key, self.stream, first, out);
                }
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2 (checked just above).
                #[allow(unsafe_code)]
                unsafe {
                    return x86::chunk_avx2(&self.key, self.stream, first, out);
                }
            }
        }
        chunk_portable(&self.key, self.stream, first, out)
    }
}

/// A matrix entry type: the map from one keystream word `w` to the value
/// `((w >> 8) - 2^23) / 2^23`, uniform in `[-1, 1)` and exact in f32 (the
/// derivation [`crate::matrices`] documents), and its vector kernel.
pub(crate) trait Entry: Copy {
    /// The entry of one word.
    fn from_word(word: u32) -> Self;
    /// Writes the entries of blocks `first .. first + 16` into `out` with a
    /// SIMD kernel; false when this CPU has none (nothing written).
    fn simd_chunk(stream: &Stream, first: u64, out: &mut [Self; CHUNK_WORDS]) -> bool;
}

fn entry_f32(word: u32) -> f32 {
    const HALF: i32 = 1 << 23;
    let m = (word >> 8) as i32; // 0 ..= 2^24 - 1
    (m - HALF) as f32 / HALF as f32
}

impl Entry for f32 {
    fn from_word(word: u32) -> f32 {
        entry_f32(word)
    }

    fn simd_chunk(stream: &Stream, first: u64, out: &mut [f32; CHUNK_WORDS]) -> bool {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked just above).
            #[allow(unsafe_code)]
            unsafe {
                x86::entries_avx512_f32(&stream.key, stream.stream, first, out)
            };
            return true;
        }
        let _ = (stream, first, out);
        false
    }
}

impl Entry for f64 {
    fn from_word(word: u32) -> f64 {
        f64::from(entry_f32(word))
    }

    fn simd_chunk(stream: &Stream, first: u64, out: &mut [f64; CHUNK_WORDS]) -> bool {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked just above).
            #[allow(unsafe_code)]
            unsafe {
                x86::entries_avx512_f64(&stream.key, stream.stream, first, out)
            };
            return true;
        }
        let _ = (stream, first, out);
        false
    }
}

const SIGMA: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];

/// The 16 input words of block `counter`.
fn block_input(key: &[u32; 8], stream: u64, counter: u64) -> [u32; 16] {
    [
        SIGMA[0],
        SIGMA[1],
        SIGMA[2],
        SIGMA[3],
        key[0],
        key[1],
        key[2],
        key[3],
        key[4],
        key[5],
        key[6],
        key[7],
        counter as u32,
        (counter >> 32) as u32,
        stream as u32,
        (stream >> 32) as u32,
    ]
}

/// 20 rounds on a state whose 16 words are scalars or vectors of words,
/// written out in full: with literal indices every word stays in a register.
macro_rules! rounds {
    ($x:ident, $add:expr, $xor:expr, $rol:ident) => {
        macro_rules! quarter {
            ($a:literal, $b:literal, $c:literal, $d:literal) => {
                $x[$a] = $add($x[$a], $x[$b]);
                $x[$d] = $rol::<16>($xor($x[$d], $x[$a]));
                $x[$c] = $add($x[$c], $x[$d]);
                $x[$b] = $rol::<12>($xor($x[$b], $x[$c]));
                $x[$a] = $add($x[$a], $x[$b]);
                $x[$d] = $rol::<8>($xor($x[$d], $x[$a]));
                $x[$c] = $add($x[$c], $x[$d]);
                $x[$b] = $rol::<7>($xor($x[$b], $x[$c]));
            };
        }
        for _ in 0..10 {
            quarter!(0, 4, 8, 12);
            quarter!(1, 5, 9, 13);
            quarter!(2, 6, 10, 14);
            quarter!(3, 7, 11, 15);
            quarter!(0, 5, 10, 15);
            quarter!(1, 6, 11, 12);
            quarter!(2, 7, 8, 13);
            quarter!(3, 4, 9, 14);
        }
    };
}

fn rol<const N: i32>(v: u32) -> u32 {
    v.rotate_left(N as u32)
}

/// The reference form: one block, scalar.
fn block_words(key: &[u32; 8], stream: u64, counter: u64) -> [u32; 16] {
    let input = block_input(key, stream, counter);
    let mut x = input;
    rounds!(x, u32::wrapping_add, |p: u32, q: u32| p ^ q, rol);
    std::array::from_fn(|w| x[w].wrapping_add(input[w]))
}

/// 16 blocks with the scalar reference.
fn chunk_portable(key: &[u32; 8], stream: u64, first: u64, out: &mut Chunk) {
    for l in 0..LANES {
        for (o, v) in out.iter_mut().zip(block_words(key, stream, first.wrapping_add(l as u64))) {
            o[l] = v;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    use std::arch::x86_64::*;

    use super::{BLOCK_WORDS, Chunk, block_input};

    /// The input words of blocks `first + offset .. first + offset + N`,
    /// word-major (one row per SIMD register).
    fn inputs<const N: usize>(key: &[u32; 8], stream: u64, first: u64, offset: usize) -> [[u32; N]; BLOCK_WORDS] {
        let mut words = [[0u32; N]; BLOCK_WORDS];
        for l in 0..N {
            let input = block_input(key, stream, first.wrapping_add((offset + l) as u64));
            for (word, v) in words.iter_mut().zip(input) {
                word[l] = v;
            }
        }
        words
    }

    #[target_feature(enable = "avx512f")]
    fn rol512<const N: i32>(v: __m512i) -> __m512i {
        _mm512_rol_epi32::<N>(v)
    }

    /// 16 blocks in the 16 lanes of AVX-512 registers.
    #[target_feature(enable = "avx512f")]
    pub(super) fn chunk_avx512(key: &[u32; 8], stream: u64, first: u64, out: &mut Chunk) {
        let words = inputs::<16>(key, stream, first, 0);
        // SAFETY: each `words[w]` is 16 u32 = 64 bytes, what an unaligned
        // 512-bit load reads.
        let input: [__m512i; 16] = std::array::from_fn(|w| unsafe { _mm512_loadu_si512(words[w].as_ptr().cast()) });
        let mut x = input;
        rounds!(x, _mm512_add_epi32, _mm512_xor_si512, rol512);
        for (o, (v, i)) in out.iter_mut().zip(x.iter().zip(&input)) {
            // SAFETY: `o` is 16 u32 = 64 bytes, what an unaligned 512-bit
            // store writes.
            unsafe { _mm512_storeu_si512(o.as_mut_ptr().cast(), _mm512_add_epi32(*v, *i)) };
        }
    }

    /// The 20 rounds plus the feed-forward of 16 blocks, word-major.
    #[target_feature(enable = "avx512f")]
    fn keystream_avx512(key: &[u32; 8], stream: u64, first: u64) -> [__m512i; 16] {
        let words = inputs::<16>(key, stream, first, 0);
        // SAFETY: each `words[w]` is 16 u32 = 64 bytes, what an unaligned
        // 512-bit load reads.
        let input: [__m512i; 16] = std::array::from_fn(|w| unsafe { _mm512_loadu_si512(words[w].as_ptr().cast()) });
        let mut x = input;
        rounds!(x, _mm512_add_epi32, _mm512_xor_si512, rol512);
        std::array::from_fn(|w| _mm512_add_epi32(x[w], input[w]))
    }

    /// Transposes 16 word-major registers (`x[w]` lane `l` = word `w` of
    /// block `l`) into block-major ones (`out[l]` = the 16 words of block
    /// `l`, in order): 32-bit, then 64-bit interleaves, then two rounds of
    /// 128-bit lane shuffles.
    #[target_feature(enable = "avx512f")]
    fn transpose16(x: [__m512i; 16]) -> [__m512i; 16] {
        let mut t = [_mm512_setzero_si512(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_epi32(x[2 * i], x[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_epi32(x[2 * i], x[2 * i + 1]);
        }
        // u[4i + m], 128-bit lane q: words 4i..4i+4 of block 4q + m.
        let mut u = [_mm512_setzero_si512(); 16];
        for i in 0..4 {
            u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
            u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
            u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
            u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
        }
        let mut out = [_mm512_setzero_si512(); 16];
        for m in 0..4 {
            let p0 = _mm512_shuffle_i32x4::<0b01_00_01_00>(u[m], u[4 + m]);
            let p1 = _mm512_shuffle_i32x4::<0b11_10_11_10>(u[m], u[4 + m]);
            let p2 = _mm512_shuffle_i32x4::<0b01_00_01_00>(u[8 + m], u[12 + m]);
            let p3 = _mm512_shuffle_i32x4::<0b11_10_11_10>(u[8 + m], u[12 + m]);
            out[m] = _mm512_shuffle_i32x4::<0b10_00_10_00>(p0, p2);
            out[4 + m] = _mm512_shuffle_i32x4::<0b11_01_11_01>(p0, p2);
            out[8 + m] = _mm512_shuffle_i32x4::<0b10_00_10_00>(p1, p3);
            out[12 + m] = _mm512_shuffle_i32x4::<0b11_01_11_01>(p1, p3);
        }
        out
    }

    /// `(w >> 8) - 2^23` of each word, as i32 (the entry times `2^23`).
    #[target_feature(enable = "avx512f")]
    fn centred(v: __m512i) -> __m512i {
        _mm512_sub_epi32(_mm512_srli_epi32::<8>(v), _mm512_set1_epi32(1 << 23))
    }

    /// Matrix entries (f32) of blocks `first .. first + 16`, in stream order.
    #[target_feature(enable = "avx512f")]
    pub(super) fn entries_avx512_f32(key: &[u32; 8], stream: u64, first: u64, out: &mut [f32; 256]) {
        let blocks = transpose16(keystream_avx512(key, stream, first));
        let scale = _mm512_set1_ps(1.0 / (1u32 << 23) as f32);
        for (dst, v) in out.chunks_exact_mut(16).zip(blocks) {
            let e = _mm512_mul_ps(_mm512_cvtepi32_ps(centred(v)), scale);
            // SAFETY: `dst` is 16 f32 = 64 bytes, what an unaligned 512-bit
            // store writes.
            unsafe { _mm512_storeu_ps(dst.as_mut_ptr(), e) };
        }
    }

    /// Matrix entries (f64) of blocks `first .. first + 16`, in stream order.
    #[target_feature(enable = "avx512f")]
    pub(super) fn entries_avx512_f64(key: &[u32; 8], stream: u64, first: u64, out: &mut [f64; 256]) {
        let blocks = transpose16(keystream_avx512(key, stream, first));
        let scale = _mm512_set1_pd(1.0 / f64::from(1u32 << 23));
        for (dst, v) in out.chunks_exact_mut(16).zip(blocks) {
            let c = centred(v);
            let lo = _mm512_mul_pd(_mm512_cvtepi32_pd(_mm512_castsi512_si256(c)), scale);
            let hi = _mm512_mul_pd(_mm512_cvtepi32_pd(_mm512_extracti64x4_epi64::<1>(c)), scale);
            // SAFETY: `dst` is 16 f64 = 128 bytes: two unaligned 512-bit
            // stores of 8 f64 each, at offsets 0 and 8.
            unsafe {
                _mm512_storeu_pd(dst.as_mut_ptr(), lo);
                _mm512_storeu_pd(dst[8..].as_mut_ptr(), hi);
            }
        }
    }

    #[target_feature(enable = "avx2")]
    fn rol256<const N: i32>(v: __m256i) -> __m256i {
        // The shift counts must be immediates: one arm per ChaCha rotation.
        match N {
            16 => _mm256_or_si256(_mm256_slli_epi32::<16>(v), _mm256_srli_epi32::<16>(v)),
            12 => _mm256_or_si256(_mm256_slli_epi32::<12>(v), _mm256_srli_epi32::<20>(v)),
            8 => _mm256_or_si256(_mm256_slli_epi32::<8>(v), _mm256_srli_epi32::<24>(v)),
            _ => _mm256_or_si256(_mm256_slli_epi32::<7>(v), _mm256_srli_epi32::<25>(v)),
        }
    }

    /// 16 blocks as two halves of 8, in the 8 lanes of AVX2 registers.
    #[target_feature(enable = "avx2")]
    pub(super) fn chunk_avx2(key: &[u32; 8], stream: u64, first: u64, out: &mut Chunk) {
        for half in 0..2 {
            let words = inputs::<8>(key, stream, first, half * 8);
            // SAFETY: each `words[w]` is 8 u32 = 32 bytes, what an unaligned
            // 256-bit load reads.
            let input: [__m256i; 16] = std::array::from_fn(|w| unsafe { _mm256_loadu_si256(words[w].as_ptr().cast()) });
            let mut x = input;
            rounds!(x, _mm256_add_epi32, _mm256_xor_si256, rol256);
            for (o, (v, i)) in out.iter_mut().zip(x.iter().zip(&input)) {
                // SAFETY: `o[half * 8..]` is 8 u32 = 32 bytes, what an
                // unaligned 256-bit store writes.
                unsafe { _mm256_storeu_si256(o[half * 8..].as_mut_ptr().cast(), _mm256_add_epi32(*v, *i)) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{RngCore, SeedableRng};
    use rand_chacha::ChaCha20Rng;

    use super::*;

    fn reference(seed: &[u8; 32], stream: u64, pos: u128, len: usize) -> Vec<u32> {
        let mut rng = ChaCha20Rng::from_seed(*seed);
        rng.set_stream(stream);
        rng.set_word_pos(pos);
        (0..len).map(|_| rng.next_u32()).collect()
    }

    #[test]
    fn the_keystream_is_rand_chachas_at_every_offset_and_length() {
        let seed: [u8; 32] = std::array::from_fn(|i| (i * 37 + 5) as u8);
        for stream in [0u64, 1, 2, u64::MAX] {
            for pos in [0u128, 1, 15, 16, 17, 255, 256, 257, 1000, (1u128 << 36) + 3] {
                for len in [0usize, 1, 15, 16, 255, 256, 257, 700] {
                    let mut got = vec![0u32; len];
                    Stream::new(&seed, stream).fill_with(pos, &mut got, |w| w);
                    assert_eq!(got, reference(&seed, stream, pos, len), "stream {stream} pos {pos} len {len}");
                }
            }
        }
    }

    #[test]
    fn entries_are_the_scalar_map_of_the_keystream_on_every_path() {
        let seed: [u8; 32] = std::array::from_fn(|i| (i * 11 + 1) as u8);
        for pos in [0u128, 3, 255, 256, 300, 4096 * 7 + 5] {
            for len in [0usize, 1, 256, 257, 511, 512, 1000] {
                let words = reference(&seed, 1, pos, len);
                let mut f32s = vec![0.0f32; len];
                let mut f64s = vec![0.0f64; len];
                Stream::new(&seed, 1).fill_entries(pos, &mut f32s);
                Stream::new(&seed, 1).fill_entries(pos, &mut f64s);
                let expect: Vec<f32> = words.iter().map(|&w| entry_f32(w)).collect();
                assert_eq!(f32s, expect, "f32 pos {pos} len {len}");
                assert_eq!(f64s, expect.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(), "f64 pos {pos} len {len}");
            }
        }
        assert_eq!(entry_f32(0), -1.0);
        assert_eq!(entry_f32(u32::MAX), 1.0 - 1.0 / (1u32 << 23) as f32);
    }

    #[test]
    fn the_block_counter_carries_into_its_high_word() {
        let seed = [9u8; 32];
        let pos = (u128::from(u32::MAX) - 2) * 16 + 5;
        let mut got = vec![0u32; 600];
        Stream::new(&seed, 1).fill_with(pos, &mut got, |w| w);
        assert_eq!(got, reference(&seed, 1, pos, 600));
    }
}
