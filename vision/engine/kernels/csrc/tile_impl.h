// The int8 x int8 GEMM shared by every vector ISA file. Included inside an anonymous namespace after the
// file's `#pragma GCC target`, with a traits struct `V` that maps a few operations to intrinsics:
//
//   y[m, n] = wscale[n] * sum_b xscale[m, b] * sum_{k in b} xq[m, k] * w[n, k]    (+ bias[n])
//
// One tile holds MR rows x NR panels (16 columns each) of int32 accumulators for the current
// K block and fp32 accumulators across blocks, so each weight byte loaded serves MR rows: at
// M <= 8 a decode step reads every weight once however many sequences run.
//
// V provides: I, F (vector types), W (a prepared weight vector), kHalves (vectors per 16-column
// panel), kLanes, kUnsigned (dot() takes the +128 weights as unsigned: start each block at
// xcorr so the +128 cancels), kMaxVec (accumulator vectors per tile that fit the registers),
// prep(), dot(), set1_i(), set1_f(), zero_f(), cvt(), fma(), loadu_f(), store_f(), choose().
//
// The int4 tile (Q4 = true, layout in vk.h) needs besides: W4 (an unpacked nibble vector, values
// 0..15), unpack4() (one load -> low and high nibbles), dot4() (unsigned nibbles x signed
// activation bytes into int32: exact, no saturation since 2 * 15 * 127 < 32767) and mul(). Per
// block it scales by xscale[m, b] * wscale[n, b] (one fp32 product, as the scalar path does).


// Software prefetch, into L2 (prefetcht1), about 24 KiB ahead in total over the tile's NR panel
// streams: one stream per core at M = 8 needs that much in flight to reach DRAM speed (DRAM
// latency x bandwidth per core), and four streams at M = 1 need a quarter each. Measured on an
// AMD EPYC (Zen, AVX-512 VNNI) against a plain read of 512 MiB in the same process, this distance
// runs M = 8 at 1.2-1.45x the M = 1 time and M = 1 at 85-90 % of the read's speed, where 1 KiB
// ahead into L1 runs M = 8 at 2.0x and M = 1 at 82-85 %; no prefetch, or prefetchnta, is slower
// at every M.
constexpr int64_t kPrefetchTotal = 24576;
constexpr int kPrefetchLocality = 2;  // __builtin_prefetch: 2 = prefetcht1 (L2)

// One output vector of row m: fp32 into y, or rounded to bf16 into y16 (scalar: a value here
// took K multiply-adds, its rounding is noise).
inline void store(const vk::Args& a, int64_t m, int64_t col, typename V::F val, int valid) {
  if (a.y16 == nullptr) {
    V::store_f(a.y + m * a.ldy + col, val, valid);
    return;
  }
  alignas(64) float tmp[V::kLanes];
  V::store_f(tmp, val, V::kLanes);
  uint16_t* out = a.y16 + m * a.ldy + col;
  for (int i = 0; i < valid; ++i) out[i] = vk::bf16_rne(tmp[i]);
}

template <int MR, int NR>
void tile(const vk::Args& a, int64_t m0, int64_t p0) {
  constexpr int H = V::kHalves;
  constexpr int NV = NR * H;
  constexpr int64_t kPrefetchBytes = kPrefetchTotal / NR / 64 * 64;
  constexpr int kVecBytes = vk::kGroupBytes / H;
  constexpr int kGroups = vk::kBlock / 4;
  const int64_t nblk = a.kp / vk::kBlock;
  const int64_t pstride = a.kp * vk::kPanel;  // bytes per panel
  const uint8_t* wp = a.w + p0 * pstride;
  const int8_t* xrow[MR];
  for (int r = 0; r < MR; ++r) xrow[r] = a.xq + (m0 + r) * a.kp;

  typename V::F facc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) facc[r][v] = V::zero_f();

  for (int64_t b = 0; b < nblk; ++b) {
    typename V::I acc[MR][NV];
    for (int r = 0; r < MR; ++r) {
      const typename V::I init = V::set1_i(V::kUnsigned ? a.xcorr[(m0 + r) * nblk + b] : 0);
      for (int v = 0; v < NV; ++v) acc[r][v] = init;
    }
    const uint8_t* wb = wp + b * kGroups * vk::kGroupBytes;
    const int64_t kb = b * vk::kBlock;
#pragma GCC unroll 8
    for (int g = 0; g < kGroups; ++g) {
      typename V::W w[NV];
      for (int n = 0; n < NR; ++n) {
        const uint8_t* src = wb + n * pstride + g * vk::kGroupBytes;
        __builtin_prefetch(src + kPrefetchBytes, 0, kPrefetchLocality);
        for (int h = 0; h < H; ++h) w[n * H + h] = V::prep(src + h * kVecBytes);
      }
      for (int r = 0; r < MR; ++r) {
        int32_t x4;
        std::memcpy(&x4, xrow[r] + kb + g * 4, 4);
        const typename V::I xv = V::set1_i(x4);
        for (int v = 0; v < NV; ++v) acc[r][v] = V::dot(acc[r][v], w[v], xv);
      }
    }
    for (int r = 0; r < MR; ++r) {
      const typename V::F s = V::set1_f(a.xscale[(m0 + r) * nblk + b]);
      for (int v = 0; v < NV; ++v) facc[r][v] = V::fma(V::cvt(acc[r][v]), s, facc[r][v]);
    }
  }

  for (int v = 0; v < NV; ++v) {
    const int64_t col = (p0 + v / H) * vk::kPanel + (v % H) * V::kLanes;
    if (col >= a.n) continue;
    const int valid = static_cast<int>(std::min<int64_t>(V::kLanes, a.n - col));
    const typename V::F ws = V::loadu_f(a.wscale + col);  // wscale and bias are padded to np
    const typename V::F bs = a.bias ? V::loadu_f(a.bias + col) : V::zero_f();
    for (int r = 0; r < MR; ++r) store(a, m0 + r, col, V::fma(facc[r][v], ws, bs), valid);
  }
}


template <int MR, int NR>
void tile4(const vk::Args& a, int64_t m0, int64_t p0) {
  constexpr int H = V::kHalves;
  constexpr int NV = NR * H;
  constexpr int64_t kPrefetchBytes = kPrefetchTotal / NR / 64 * 64;
  constexpr int kVecBytes = vk::kPairBytes / H;
  const int64_t nblk = a.kp / vk::kBlock;
  const int64_t pstride = nblk * vk::kBlockBytes4;  // bytes per panel
  const uint8_t* wp = a.w + p0 * pstride;
  const int8_t* xrow[MR];
  for (int r = 0; r < MR; ++r) xrow[r] = a.xq + (m0 + r) * a.kp;

  typename V::F facc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) facc[r][v] = V::zero_f();

  for (int64_t b = 0; b < nblk; ++b) {
    typename V::I acc[MR][NV];
    for (int r = 0; r < MR; ++r) {
      const typename V::I init = V::set1_i(a.xcorr[(m0 + r) * nblk + b] / 16);  // -8 * block sum
      for (int v = 0; v < NV; ++v) acc[r][v] = init;
    }
    const uint8_t* wb = wp + b * vk::kBlockBytes4;
    const int64_t kb = b * vk::kBlock;
#pragma GCC unroll 4
    for (int p = 0; p < 4; ++p) {
      typename V::W4 lo[NV], hi[NV];
      for (int n = 0; n < NR; ++n) {
        const uint8_t* src = wb + n * pstride + p * vk::kPairBytes;
        __builtin_prefetch(src + kPrefetchBytes, 0, kPrefetchLocality);
        for (int h = 0; h < H; ++h) V::unpack4(src + h * kVecBytes, &lo[n * H + h], &hi[n * H + h]);
      }
      for (int r = 0; r < MR; ++r) {
        int32_t xl, xh;
        std::memcpy(&xl, xrow[r] + kb + p * 4, 4);
        std::memcpy(&xh, xrow[r] + kb + (p + 4) * 4, 4);
        const typename V::I xvl = V::set1_i(xl), xvh = V::set1_i(xh);
        for (int v = 0; v < NV; ++v) acc[r][v] = V::dot4(V::dot4(acc[r][v], lo[v], xvl), hi[v], xvh);
      }
    }
    for (int v = 0; v < NV; ++v) {
      const uint8_t* sb = wb + (v / H) * pstride + vk::kNibbleBytes4 + (v % H) * V::kLanes * 4;
      const typename V::F ws = V::loadu_f(reinterpret_cast<const float*>(sb));
      for (int r = 0; r < MR; ++r) {
        const typename V::F s = V::mul(V::set1_f(a.xscale[(m0 + r) * nblk + b]), ws);
        facc[r][v] = V::fma(V::cvt(acc[r][v]), s, facc[r][v]);
      }
    }
  }

  const typename V::F one = V::set1_f(1.f);
  for (int v = 0; v < NV; ++v) {
    const int64_t col = (p0 + v / H) * vk::kPanel + (v % H) * V::kLanes;
    if (col >= a.n) continue;
    const int valid = static_cast<int>(std::min<int64_t>(V::kLanes, a.n - col));
    const typename V::F bs = a.bias ? V::loadu_f(a.bias + col) : V::zero_f();  // bias padded to np
    for (int r = 0; r < MR; ++r) store(a, m0 + r, col, V::fma(facc[r][v], one, bs), valid);
  }
}

using TileFn = void (*)(const vk::Args&, int64_t, int64_t);

template <bool Q4, int MR, int NR>
constexpr TileFn tile_or_null() {
  if constexpr (MR * NR * V::kHalves <= V::kMaxVec) {
    if constexpr (Q4) {
      return &tile4<MR, NR>;
    } else {
      return &tile<MR, NR>;
    }
  } else {
    return nullptr;
  }
}

template <bool Q4, int MR>
constexpr TileFn pick_nr(int nr) {
  return nr == 1 ? tile_or_null<Q4, MR, 1>()
         : nr == 2 ? tile_or_null<Q4, MR, 2>()
         : nr == 3 ? tile_or_null<Q4, MR, 3>()
                   : tile_or_null<Q4, MR, 4>();
}

template <bool Q4>
TileFn pick(int mr, int nr) {
  switch (mr) {
    case 1: return pick_nr<Q4, 1>(nr);
    case 2: return pick_nr<Q4, 2>(nr);
    case 3: return pick_nr<Q4, 3>(nr);
    case 4: return pick_nr<Q4, 4>(nr);
    case 5: return pick_nr<Q4, 5>(nr);
    case 6: return pick_nr<Q4, 6>(nr);
    case 7: return pick_nr<Q4, 7>(nr);
    default: return pick_nr<Q4, 8>(nr);
  }
}

template <bool Q4 = false>
void run(const vk::Args& a, int64_t pb, int64_t pe) {
  int mr = 1, nr = 1;
  V::choose(a.m, &mr, &nr);
  for (int64_t p = pb; p < pe;) {
    const int nrr = (pe - p >= nr) ? nr : 1;
    for (int64_t m = 0; m < a.m; m += mr) {
      const int mrr = static_cast<int>(std::min<int64_t>(mr, a.m - m));
      pick<Q4>(mrr, nrr)(a, m, p);
    }
    p += nrr;
  }
}


// The tile's integer dot product in a register-only loop: this thread's int8 multiply-add peak on
// this CPU (`bench batching` compares vision and prefill with it). kMaxVec independent chains
// hide the instruction's latency; no memory is touched inside the loop. Returns the
// multiply-adds done (4 per int32 lane per dot).
int64_t dot_peak(int64_t iters) {
  alignas(64) uint8_t bytes[64];
  for (int i = 0; i < 64; ++i) bytes[i] = static_cast<uint8_t>(129 + (i & 3));
  const typename V::W w = V::prep(bytes);
  typename V::I xs = V::set1_i(0x01020301);
  typename V::I acc[V::kMaxVec];
  for (int v = 0; v < V::kMaxVec; ++v) acc[v] = V::set1_i(v);
  for (int64_t it = 0; it < iters; ++it) {
    for (int v = 0; v < V::kMaxVec; ++v) {
      // The barrier makes the activation operand new for every dot: AVX2's dot is several
      // instructions (sign, vpmaddubsw, vpmaddwd, add) of which only the add reads the
      // accumulator, and the compiler would hoist or share the rest.
      asm volatile("" : "+v"(xs));
      acc[v] = V::dot(acc[v], w, xs);
    }
  }
  int32_t sum = 0;
  for (int v = 0; v < V::kMaxVec; ++v) {
    int32_t lane;
    std::memcpy(&lane, &acc[v], sizeof lane);
    sum += lane;
  }
  vk::dot_peak_sink += sum;  // keeps the loop
  return iters * V::kMaxVec * V::kLanes * 4;
}
