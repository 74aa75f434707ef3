// Decode attention shared by the vector ISA files (attn_avx512.cpp, attn_avx2.cpp): one
// sequence's `groups` query heads against the `len` keys of the KV head they share, bf16 in and
// out, fp32 inside. Included inside an anonymous namespace after the file's target pragma, with a
// traits struct `A`: F (vector), kLanes, zero, set1, add, sub, mul, fma, hsum, loadu, storeu,
// loadn/storen (the first n lanes; the rest of loadn is 0), keep_first (zero the lanes from n on),
// load_bf16, store_bf16 (round to nearest even) and exp (x <= 0).
//
// Decode has one query row per head, so this is memory-bound: each key and value row is read
// once for all the group's heads. Two passes: scores with their max, then the softmax weights,
// then weights times values.

constexpr int kMaxHeadVec = 256 / A::kLanes;  // head_dim <= 256
constexpr int kMaxGroups = 8;

// G query heads per KV head and HV vectors per head row known at compile time keep q and the
// output sums in registers (Qwen3-VL 2B: 2 and 8); 0 = taken from the arguments at run time.
template <int G, int HV>
void attend_t(const vk::AttnArgs& a, const uint16_t* q, const uint16_t* k, const uint16_t* v, int64_t len,
              float* scores, uint16_t* out) {
  const int hv = HV ? HV : static_cast<int>(a.head_dim / A::kLanes);
  const int groups = G ? G : static_cast<int>(a.groups);
  typename A::F qv[kMaxGroups][kMaxHeadVec];
  for (int g = 0; g < groups; ++g)
    for (int i = 0; i < hv; ++i) qv[g][i] = A::mul(A::load_bf16(q + g * a.q_head_stride + i * A::kLanes), A::set1(a.scale));
  float mx[kMaxGroups];
  for (int g = 0; g < groups; ++g) mx[g] = -3.0e38f;
  for (int64_t j = 0; j < len; ++j) {
    const uint16_t* kr = k + j * a.kv_row_stride;
    typename A::F kv[kMaxHeadVec];
    for (int i = 0; i < hv; ++i) kv[i] = A::load_bf16(kr + i * A::kLanes);
    for (int g = 0; g < groups; ++g) {
      typename A::F s0 = A::mul(qv[g][0], kv[0]), s1 = A::zero();
      for (int i = 1; i < hv; ++i) {
        if (i & 1) {
          s1 = A::fma(qv[g][i], kv[i], s1);
        } else {
          s0 = A::fma(qv[g][i], kv[i], s0);
        }
      }
      const float s = A::hsum(A::add(s0, s1));
      scores[g * len + j] = s;
      mx[g] = s > mx[g] ? s : mx[g];
    }
  }
  for (int g = 0; g < groups; ++g) {
    float* sg = scores + g * len;
    const typename A::F m = A::set1(mx[g]);
    typename A::F sum = A::zero();
    int64_t j = 0;
    for (; j + A::kLanes <= len; j += A::kLanes) {
      const typename A::F e = A::exp(A::sub(A::loadu(sg + j), m));
      A::storeu(sg + j, e);
      sum = A::add(sum, e);
    }
    if (j < len) {  // the tail's missing lanes count 0 in the sum
      const int rest = static_cast<int>(len - j);
      const typename A::F e = A::exp(A::sub(A::loadn(sg + j, rest), m));
      A::storen(sg + j, e, rest);
      sum = A::add(sum, A::keep_first(e, rest));
    }
    const float inv = 1.0f / A::hsum(sum);
    for (int64_t t = 0; t < len; ++t) sg[t] *= inv;
  }
  typename A::F acc[kMaxGroups][kMaxHeadVec];
  for (int g = 0; g < groups; ++g)
    for (int i = 0; i < hv; ++i) acc[g][i] = A::zero();
  for (int64_t j = 0; j < len; ++j) {
    const uint16_t* vr = v + j * a.kv_row_stride;
    for (int i = 0; i < hv; ++i) {
      const typename A::F vv = A::load_bf16(vr + i * A::kLanes);
      for (int g = 0; g < groups; ++g) acc[g][i] = A::fma(A::set1(scores[g * len + j]), vv, acc[g][i]);
    }
  }
  for (int g = 0; g < groups; ++g)
    for (int i = 0; i < hv; ++i) A::store_bf16(out + g * a.head_dim + i * A::kLanes, acc[g][i]);
}

void attend(const vk::AttnArgs& a, const uint16_t* q, const uint16_t* k, const uint16_t* v, int64_t len, float* scores,
            uint16_t* out) {
  if (a.head_dim == 128 && a.groups == 2) return attend_t<2, 128 / A::kLanes>(a, q, k, v, len, scores, out);
  if (a.head_dim == 128 && a.groups == 1) return attend_t<1, 128 / A::kLanes>(a, q, k, v, len, scores, out);
  if (a.head_dim == 128 && a.groups == 4) return attend_t<4, 128 / A::kLanes>(a, q, k, v, len, scores, out);
  if (a.head_dim == 64 && a.groups == 2) return attend_t<2, 64 / A::kLanes>(a, q, k, v, len, scores, out);
  attend_t<0, 0>(a, q, k, v, len, scores, out);
}

