// Per-row activation quantization shared by the ISA files (included inside an anonymous namespace).

// Per-row, per-block symmetric int8 quantization of the activations (round half to even, as
// torch.round), plus the block's correction term for the unsigned-weight dot product.
void quant_rows(const float* x, int64_t ldx, int64_t k, int64_t kp, int64_t r0, int64_t r1, int8_t* xq,
                float* xscale, int32_t* xcorr) {
  const int64_t nblk = kp / vk::kBlock;
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * ldx;
    int8_t* qr = xq + r * kp;
    for (int64_t b = 0; b < nblk; ++b) {
      const int64_t k0 = b * vk::kBlock;
      const int64_t k1 = std::min<int64_t>(k0 + vk::kBlock, k);
      float amax = 0.f;
      for (int64_t i = k0; i < k1; ++i) amax = std::max(amax, std::fabs(xr[i]));
      const float inv = amax > 0.f ? 127.f / amax : 0.f;
      int32_t sum = 0;
      for (int64_t i = k0; i < k0 + vk::kBlock; ++i) {
        float q = i < k1 ? std::nearbyint(xr[i] * inv) : 0.f;
        q = std::min(127.f, std::max(-127.f, q));
        qr[i] = static_cast<int8_t>(q);
        sum += static_cast<int32_t>(q);
      }
      xscale[r * nblk + b] = amax / 127.f;
      xcorr[r * nblk + b] = -128 * sum;
    }
  }
}
