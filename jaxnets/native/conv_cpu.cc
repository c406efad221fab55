// Direct 2-D convolution for XLA's CPU backend, as XLA FFI custom calls (jaxnets.native).
//
// Why: XLA's CPU convolution runs far below the matmul rate for the course's small CNNs, and
// im2col matrix products pay for writing and reading a patch matrix many times the input's
// size. These kernels read the padded input in place and keep a tile of outputs in registers:
//
//   forward      out[n,i,j,f] = bias[f] + sum_{a,b,c} xp[n, s*i+a, s*j+b, c] * w[a,b,c,f]
//   weight grad  dw[a,b,c,f]  = sum_{n,i,j} xp[n, s*i+a, s*j+b, c] * dout[n,i,j,f]
//
// (xp NHWC, already padded by the caller; w HWIO; float32; C_out a multiple of the vector
// width.) The input gradient is the forward kernel run on the padded, dilated output
// gradient with the flipped, transposed kernel, which the caller arranges.
//
// Register tiling: the forward keeps R output pixels x FB vectors of output channels in
// registers and, per kernel tap (a, b, c), loads FB weight vectors and broadcasts R input
// values. The weight gradient keeps KB kernel taps x FB channel vectors, and per output pixel
// loads FB gradient vectors and broadcasts KB input values. With stride 1 or not, the kw*C
// taps of one kernel row at one output pixel are contiguous in xp, which is what makes the
// (b, c) taps one flat index k here.
//
// Work is split over images on XLA's intra-op thread pool; the handler returns a future that
// completes when every chunk is done, so no XLA thread blocks waiting.

#include <algorithm>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

#if defined(__AVX512F__)
constexpr int kLanes = 16;
constexpr int kAccumulators = 28;  // of 32 zmm registers; the rest hold weights/broadcasts
constexpr int kMaxChannelVectors = 4;
#elif defined(__AVX__)
constexpr int kLanes = 8;
constexpr int kAccumulators = 12;  // of 16 ymm registers
constexpr int kMaxChannelVectors = 2;
#else
constexpr int kLanes = 4;
constexpr int kAccumulators = 12;
constexpr int kMaxChannelVectors = 2;
#endif

typedef float Vec __attribute__((vector_size(kLanes * sizeof(float))));
// The same vector at any float's address (unaligned loads and stores, no aliasing surprises).
typedef float UnalignedVec
    __attribute__((vector_size(kLanes * sizeof(float)), aligned(alignof(float)), may_alias));

typedef int32_t IntVec __attribute__((vector_size(kLanes * sizeof(int32_t))));
typedef int8_t ByteVec __attribute__((vector_size(kLanes), aligned(1), may_alias));

inline Vec load(const float* p) { return *reinterpret_cast<const UnalignedVec*>(p); }
inline void store(float* p, Vec v) { *reinterpret_cast<UnalignedVec*>(p) = v; }

struct Geometry {
  int64_t n, hp, wp, c;  // padded input
  int64_t kh, kw, f;     // kernel (kh, kw, c, f)
  int64_t ho, wo;        // output
  int64_t sh, sw;        // stride
};

// n items (output columns, taps) in the fewest tiles of at most `most`, as even as possible:
// 32 columns in tiles of <= 14 -> 11, 11, 10 rather than 14, 14, 4.
struct EvenSplit {
  int64_t tiles, base, extra;
  EvenSplit(int64_t n, int64_t most)
      : tiles((n + most - 1) / most), base(n / tiles), extra(n % tiles) {}
  int size(int64_t t) const { return static_cast<int>(base + (t < extra ? 1 : 0)); }
};

// Register tiles are templates on their size, which is known only at run time: Tiles::fn<S>()
// is the tile function of size S, and this returns the one of size s in 1..N.
template <typename Tiles, int... Sizes>
auto pick_tile(int s, std::integer_sequence<int, Sizes...>) {
  using Fn = decltype(Tiles::template fn<1>());
  static constexpr Fn table[] = {Tiles::template fn<Sizes + 1>()...};
  return table[s - 1];
}

// ------------------------------------------------------------------------- forward
// R output pixels along a row x FB channel vectors, for one image row i and channel block f0.
template <int R, int FB>
inline void forward_tile(const Geometry& g, const float* xp_image, const float* w, const float* bias,
                         float* out_row, int64_t i, int64_t j0, int64_t f0) {
  Vec acc[R][FB];
  #pragma GCC unroll 32
  for (int v = 0; v < FB; ++v) {
    Vec b = load(bias + f0 + v * kLanes);
    #pragma GCC unroll 32
    for (int r = 0; r < R; ++r) acc[r][v] = b;
  }
  const int64_t k_row = g.kw * g.c;  // contiguous taps of one kernel row
  const int64_t step = g.sw * g.c;   // from one output pixel's window to the next
  for (int64_t a = 0; a < g.kh; ++a) {
    const float* x_row = xp_image + ((g.sh * i + a) * g.wp + g.sw * j0) * g.c;
    const float* w_row = w + a * k_row * g.f + f0;
    for (int64_t k = 0; k < k_row; ++k) {
      Vec wv[FB];
      #pragma GCC unroll 32
      for (int v = 0; v < FB; ++v) wv[v] = load(w_row + k * g.f + v * kLanes);
      #pragma GCC unroll 32
      for (int r = 0; r < R; ++r) {
        const float xb = x_row[r * step + k];  // broadcast by the vector product
        #pragma GCC unroll 32
        for (int v = 0; v < FB; ++v) acc[r][v] += xb * wv[v];
      }
    }
  }
  #pragma GCC unroll 32
  for (int r = 0; r < R; ++r)
    #pragma GCC unroll 32
    for (int v = 0; v < FB; ++v) store(out_row + (j0 + r) * g.f + f0 + v * kLanes, acc[r][v]);
}

template <int FB>
struct ForwardTiles {
  template <int R>
  static constexpr auto fn() {
    return &forward_tile<R, FB>;
  }
};

template <int FB>
void forward_images(const Geometry& g, const float* xp, const float* w, const float* bias,
                    float* out, int64_t n0, int64_t n1) {
  constexpr int kMaxR = kAccumulators / FB;
  const EvenSplit split(g.wo, kMaxR);
  const auto sizes = std::make_integer_sequence<int, kMaxR>{};
  for (int64_t n = n0; n < n1; ++n) {
    const float* xp_image = xp + n * g.hp * g.wp * g.c;
    for (int64_t i = 0; i < g.ho; ++i) {
      float* out_row = out + (n * g.ho + i) * g.wo * g.f;
      for (int64_t f0 = 0; f0 < g.f; f0 += FB * kLanes) {
        int64_t j0 = 0;
        for (int64_t t = 0; t < split.tiles; ++t) {
          const int r = split.size(t);
          pick_tile<ForwardTiles<FB>>(r, sizes)(g, xp_image, w, bias, out_row, i, j0, f0);
          j0 += r;
        }
      }
    }
  }
}

// ------------------------------------------------------------------------- conv - relu - 2x2 pool
// The forward above for two conv rows (2i, 2i+1) and 2Q conv columns at once, reduced in
// registers to Q pooled outputs: pooled = max(0, max of the 2x2 window) and `which`, the first
// tap in row-major order (0..3) equal to the window's max, or 4 when the max is <= 0 (relu cuts
// the gradient). The conv output itself is never written. Rows / columns past a multiple of 2
// are not computed (max_pool drops them).
template <int Q, int FB>
inline void relu_pool_tile(const Geometry& g, const float* xp_image, const float* w,
                           const float* bias, float* pooled_row, int8_t* which_row, int64_t i,
                           int64_t q0, int64_t f0) {
  constexpr int R = 2 * Q;
  Vec acc[2][R][FB];
#pragma GCC unroll 32
  for (int v = 0; v < FB; ++v) {
    Vec b = load(bias + f0 + v * kLanes);
#pragma GCC unroll 32
    for (int r = 0; r < R; ++r) acc[0][r][v] = acc[1][r][v] = b;
  }
  const int64_t k_row = g.kw * g.c;
  const int64_t step = g.sw * g.c;
  for (int64_t a = 0; a < g.kh; ++a) {
    const float* x_top = xp_image + ((g.sh * 2 * i + a) * g.wp + g.sw * 2 * q0) * g.c;
    const float* x_bottom = x_top + g.sh * g.wp * g.c;
    const float* w_row = w + a * k_row * g.f + f0;
    for (int64_t k = 0; k < k_row; ++k) {
      Vec wv[FB];
#pragma GCC unroll 32
      for (int v = 0; v < FB; ++v) wv[v] = load(w_row + k * g.f + v * kLanes);
#pragma GCC unroll 32
      for (int r = 0; r < R; ++r) {
        const float top = x_top[r * step + k], bottom = x_bottom[r * step + k];
#pragma GCC unroll 32
        for (int v = 0; v < FB; ++v) {
          acc[0][r][v] += top * wv[v];
          acc[1][r][v] += bottom * wv[v];
        }
      }
    }
  }
#pragma GCC unroll 32
  for (int q = 0; q < Q; ++q) {
#pragma GCC unroll 32
    for (int v = 0; v < FB; ++v) {
      const Vec t0 = acc[0][2 * q][v], t1 = acc[0][2 * q + 1][v];
      const Vec t2 = acc[1][2 * q][v], t3 = acc[1][2 * q + 1][v];
      const Vec m01 = t0 > t1 ? t0 : t1, m23 = t2 > t3 ? t2 : t3;
      const Vec top = m01 > m23 ? m01 : m23;
      IntVec tap = IntVec{} + 4;
      tap = t3 == top ? IntVec{} + 3 : tap;
      tap = t2 == top ? IntVec{} + 2 : tap;
      tap = t1 == top ? IntVec{} + 1 : tap;
      tap = t0 == top ? IntVec{} : tap;
      tap = top > 0 ? tap : IntVec{} + 4;
      const int64_t at = (q0 + q) * g.f + f0 + v * kLanes;
      store(pooled_row + at, top > 0 ? top : Vec{});
      *reinterpret_cast<ByteVec*>(which_row + at) = __builtin_convertvector(tap, ByteVec);
    }
  }
}

template <int FB>
struct ReluPoolTiles {
  template <int Q>
  static constexpr auto fn() {
    return &relu_pool_tile<Q, FB>;
  }
};

template <int FB>
void relu_pool_images(const Geometry& g, const float* xp, const float* w, const float* bias,
                      float* pooled, int8_t* which, int64_t n0, int64_t n1) {
  constexpr int kMaxQ = kAccumulators / (4 * FB);
  const int64_t pooled_h = g.ho / 2, pooled_w = g.wo / 2;
  const EvenSplit split(pooled_w, kMaxQ);
  const auto sizes = std::make_integer_sequence<int, kMaxQ>{};
  for (int64_t n = n0; n < n1; ++n) {
    const float* xp_image = xp + n * g.hp * g.wp * g.c;
    for (int64_t i = 0; i < pooled_h; ++i) {
      const int64_t row = (n * pooled_h + i) * pooled_w * g.f;
      for (int64_t f0 = 0; f0 < g.f; f0 += FB * kLanes) {
        int64_t q0 = 0;
        for (int64_t t = 0; t < split.tiles; ++t) {
          const int q = split.size(t);
          pick_tile<ReluPoolTiles<FB>>(q, sizes)(g, xp_image, w, bias, pooled + row, which + row,
                                                 i, q0, f0);
          q0 += q;
        }
      }
    }
  }
}

// ------------------------------------------------------------------------- weight gradient
// Where one image's output gradient comes from. DenseGrad: dout itself. PooledGrad: the conv -
// relu - 2x2 pool block's, unpooled per image into a buffer that stays in cache (the tap that
// won each window gets the window's gradient, the others 0; rows / columns the pool dropped
// get 0), so the conv-sized gradient of the whole batch is never stored.
struct DenseGrad {
  const float* dout;  // (N, Ho, Wo, F)
  DenseGrad image(const Geometry& g, int64_t n) const { return {dout + n * g.ho * g.wo * g.f}; }
  Vec at(const Geometry& g, int64_t i, int64_t j, int64_t channel) const {
    return load(dout + (i * g.wo + j) * g.f + channel);
  }
};

struct PooledGrad {
  const float* dpool;   // (N, Ho/2, Wo/2, F)
  const int8_t* which;  // same shape: winning tap 0..3, or 4 (relu cut)
  DenseGrad image(const Geometry& g, int64_t n) const {
    thread_local std::vector<float> unpooled;
    unpooled.assign(static_cast<size_t>(g.ho * g.wo * g.f), 0.0f);
    const int64_t ph = g.ho / 2, pw = g.wo / 2, size = ph * pw * g.f;
    const float* d = dpool + n * size;
    const int8_t* w = which + n * size;
    for (int64_t i = 0; i < 2 * ph; ++i) {
      for (int64_t j = 0; j < 2 * pw; ++j) {
        const IntVec tap = IntVec{} + static_cast<int32_t>((i % 2) * 2 + j % 2);
        const int64_t window = ((i / 2) * pw + j / 2) * g.f;
        float* out = unpooled.data() + (i * g.wo + j) * g.f;
        for (int64_t c = 0; c < g.f; c += kLanes) {
          const IntVec won =
              __builtin_convertvector(*reinterpret_cast<const ByteVec*>(w + window + c), IntVec);
          store(out + c, won == tap ? load(d + window + c) : Vec{});
        }
      }
    }
    return {unpooled.data()};
  }
};

// KB taps k0..k0+KB of kernel row a x FB channel vectors, summed over one image's pixels.
template <int KB, int FB>
inline void weight_grad_tile(const Geometry& g, const float* xp_image, const DenseGrad& grad,
                             float* dw, int64_t a, int64_t k0, int64_t f0) {
  const int64_t k_row = g.kw * g.c;
  float* dw_tile = dw + (a * k_row + k0) * g.f + f0;
  Vec acc[KB][FB];
#pragma GCC unroll 32
  for (int q = 0; q < KB; ++q)
#pragma GCC unroll 32
    for (int v = 0; v < FB; ++v) acc[q][v] = load(dw_tile + q * g.f + v * kLanes);
  for (int64_t i = 0; i < g.ho; ++i) {
    const float* x_row = xp_image + ((g.sh * i + a) * g.wp) * g.c + k0;
    for (int64_t j = 0; j < g.wo; ++j) {
      const float* x_at = x_row + g.sw * j * g.c;
      Vec dv[FB];
#pragma GCC unroll 32
      for (int v = 0; v < FB; ++v) dv[v] = grad.at(g, i, j, f0 + v * kLanes);
#pragma GCC unroll 32
      for (int q = 0; q < KB; ++q) {
        const float xb = x_at[q];
#pragma GCC unroll 32
        for (int v = 0; v < FB; ++v) acc[q][v] += xb * dv[v];
      }
    }
  }
#pragma GCC unroll 32
  for (int q = 0; q < KB; ++q)
#pragma GCC unroll 32
    for (int v = 0; v < FB; ++v) store(dw_tile + q * g.f + v * kLanes, acc[q][v]);
}

template <int FB>
struct WeightGradTiles {
  template <int KB>
  static constexpr auto fn() {
    return &weight_grad_tile<KB, FB>;
  }
};

// Accumulates images n0..n1 into dw (zeroed by the caller).
template <int FB, typename Grad>
void weight_grad_images(const Geometry& g, const float* xp, const Grad& grad, float* dw,
                        int64_t n0, int64_t n1) {
  constexpr int kMaxK = kAccumulators / FB;
  const int64_t k_row = g.kw * g.c;
  const EvenSplit split(k_row, kMaxK);
  const auto sizes = std::make_integer_sequence<int, kMaxK>{};
  for (int64_t n = n0; n < n1; ++n) {
    const float* xp_image = xp + n * g.hp * g.wp * g.c;
    const DenseGrad grad_image = grad.image(g, n);
    for (int64_t a = 0; a < g.kh; ++a) {
      for (int64_t f0 = 0; f0 < g.f; f0 += FB * kLanes) {
        int64_t k0 = 0;
        for (int64_t t = 0; t < split.tiles; ++t) {
          const int kb = split.size(t);
          pick_tile<WeightGradTiles<FB>>(kb, sizes)(g, xp_image, grad_image, dw, a, k0, f0);
          k0 += kb;
        }
      }
    }
  }
}

// ------------------------------------------------------------------------- dispatch
// Vectors of output channels per register tile: the most, up to kMaxChannelVectors, that divide
// the channels evenly (tiles step through the channels by that many vectors).
int channel_vectors(int64_t f) {
  for (int fb = kMaxChannelVectors; fb > 1; --fb)
    if ((f / kLanes) % fb == 0) return fb;
  return 1;
}

// Runs body(worker, n0, n1) over images [0, n) on `workers` workers (this thread and pool
// threads), which take blocks of images from a shared counter: on a machine whose cores are
// unevenly loaded (a VM whose host steals time) a fixed split would wait for the slowest core.
// The last worker to finish runs `finish` and then completes the returned future.
// Calls body(std::integral_constant<int, FB>{}) for the run-time fb in 1..4, so the kernels
// can take FB as a template parameter.
template <typename Body>
void with_channel_vectors(int fb, Body body) {
  switch (fb) {
    case 1: body(std::integral_constant<int, 1>{}); break;
    case 2: body(std::integral_constant<int, 2>{}); break;
    case 3: body(std::integral_constant<int, 3>{}); break;
    default: body(std::integral_constant<int, 4>{}); break;
  }
}

// Images per block: about 8 blocks per worker, so a slow core holds up the rest by 1/8 at most.
int64_t block_size(int64_t n, int64_t workers) { return std::max<int64_t>(1, n / (8 * workers)); }

template <typename Body, typename Finish>
ffi::Future run_workers(ffi::ThreadPool pool, int64_t n, int64_t workers, Body body,
                        Finish finish) {
  workers = std::max<int64_t>(1, std::min(workers, n));
  struct State {
    State(Body body, Finish finish, int64_t n, int64_t grain, int64_t workers)
        : body(std::move(body)), finish(std::move(finish)), n(n), grain(grain), running(workers) {}
    Body body;
    Finish finish;
    const int64_t n, grain;
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> running;
  };
  auto state = std::make_shared<State>(std::move(body), std::move(finish), n,
                                       block_size(n, workers), workers);
  ffi::Promise promise;
  ffi::Future future(promise);
  for (int64_t t = 0; t < workers; ++t) {
    auto task = [state, t, promise]() mutable {
      for (;;) {
        const int64_t n0 = state->next.fetch_add(state->grain, std::memory_order_relaxed);
        if (n0 >= state->n) break;
        state->body(t, n0, std::min(n0 + state->grain, state->n));
      }
      if (state->running.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        state->finish();
        promise.SetAvailable();
      }
    };
    if (t + 1 == workers) {
      task();  // the last worker on this thread
    } else {
      pool.Schedule(std::move(task));
    }
  }
  return future;
}

template <typename Body>
ffi::Future run_workers(ffi::ThreadPool pool, int64_t n, int64_t workers, Body body) {
  return run_workers(pool, n, workers, std::move(body), [] {});
}

int64_t pool_chunks(ffi::ThreadPool& pool) {
  return std::max<int64_t>(1, pool.num_threads());
}

Geometry geometry(ffi::Buffer<ffi::F32> xp, ffi::Buffer<ffi::F32> w, int64_t ho, int64_t wo,
                  int64_t sh, int64_t sw) {
  auto xd = xp.dimensions();
  auto wd = w.dimensions();
  return Geometry{xd[0], xd[1], xd[2], xd[3], wd[0], wd[1], wd[3], ho, wo, sh, sw};
}

ffi::Error check(const Geometry& g, int64_t w_c) {
  if (g.sh < 1 || g.sw < 1) return ffi::Error::InvalidArgument("jaxnets conv: stride must be >= 1");
  if (g.c < 1 || g.kh < 1 || g.kw < 1 || g.hp < g.kh || g.wp < g.kw)
    return ffi::Error::InvalidArgument("jaxnets conv: empty kernel or input smaller than it");
  if (w_c != g.c) return ffi::Error::InvalidArgument("jaxnets conv: kernel C_in != input C");
  if (g.f % kLanes != 0)
    return ffi::Error::InvalidArgument("jaxnets conv: C_out must be a multiple of the vector width");
  if (g.ho != (g.hp - g.kh) / g.sh + 1 || g.wo != (g.wp - g.kw) / g.sw + 1)
    return ffi::Error::InvalidArgument("jaxnets conv: output shape does not match the geometry");
  return ffi::Error::Success();
}

ffi::Future failed(ffi::Error error) {
  ffi::Promise promise;
  ffi::Future future(promise);
  promise.SetError(std::move(error));
  return future;
}

ffi::Future Conv2dForward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> xp, ffi::Buffer<ffi::F32> w,
                          ffi::Buffer<ffi::F32> bias, int64_t sh, int64_t sw,
                          ffi::ResultBuffer<ffi::F32> out) {
  auto od = out->dimensions();
  const Geometry g = geometry(xp, w, od[1], od[2], sh, sw);
  if (ffi::Error e = check(g, w.dimensions()[2]); e.failure()) return failed(e);
  const float* x_data = xp.typed_data();
  const float* w_data = w.typed_data();
  const float* b_data = bias.typed_data();
  float* o_data = out->typed_data();
  const int fb = channel_vectors(g.f);
  return run_workers(pool, g.n, pool_chunks(pool), [=](int64_t, int64_t n0, int64_t n1) {
    with_channel_vectors(fb, [&](auto FB) {
      forward_images<FB>(g, x_data, w_data, b_data, o_data, n0, n1);
    });
  });
}

ffi::Future Conv2dReluPool2Forward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> xp,
                                  ffi::Buffer<ffi::F32> w, ffi::Buffer<ffi::F32> bias,
                                  int64_t sh, int64_t sw, ffi::ResultBuffer<ffi::F32> pooled,
                                  ffi::ResultBuffer<ffi::S8> which) {
  auto xd = xp.dimensions();
  auto wd = w.dimensions();
  if (sh < 1 || sw < 1) return failed(ffi::Error::InvalidArgument("jaxnets conv: stride < 1"));
  const int64_t ho = (xd[1] - wd[0]) / sh + 1, wo = (xd[2] - wd[1]) / sw + 1;
  const Geometry g = geometry(xp, w, ho, wo, sh, sw);
  auto pd = pooled->dimensions();
  ffi::Error e = check(g, wd[2]);
  if (e.success() && (ho < 2 || wo < 2 || pd[1] != ho / 2 || pd[2] != wo / 2 || pd[3] != g.f))
    e = ffi::Error::InvalidArgument("jaxnets conv: pooled output shape does not match");
  if (e.failure()) return failed(e);
  const float* x_data = xp.typed_data();
  const float* w_data = w.typed_data();
  const float* b_data = bias.typed_data();
  float* p_data = pooled->typed_data();
  int8_t* which_data = which->typed_data();
  // Two conv rows per tile: at most two channel vectors, so a tile still holds >= 3 windows.
  const bool two = g.f % (2 * kLanes) == 0;
  return run_workers(pool, g.n, pool_chunks(pool), [=](int64_t, int64_t n0, int64_t n1) {
    if (two) {
      relu_pool_images<2>(g, x_data, w_data, b_data, p_data, which_data, n0, n1);
    } else {
      relu_pool_images<1>(g, x_data, w_data, b_data, p_data, which_data, n0, n1);
    }
  });
}

// Sums per block of images, whichever worker takes it, added up in block order by the last
// worker to finish: the result does not depend on the scheduling (runs are reproducible).
template <typename Grad>
ffi::Future weight_grad(ffi::ThreadPool pool, const Geometry& g, const float* xp, Grad grad,
                        float* dw) {
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(pool_chunks(pool), g.n));
  const int64_t size = g.kh * g.kw * g.c * g.f;
  const int64_t grain = block_size(g.n, workers), blocks = (g.n + grain - 1) / grain;
  auto sums = std::make_shared<std::vector<float>>(static_cast<size_t>(blocks * size));
  const int fb = channel_vectors(g.f);
  return run_workers(
      pool, g.n, workers,
      [=](int64_t, int64_t n0, int64_t n1) {
        float* sum = sums->data() + (n0 / grain) * size;
        with_channel_vectors(fb, [&](auto FB) {
          weight_grad_images<FB>(g, xp, grad, sum, n0, n1);
        });
      },
      [=] {
        std::copy(sums->data(), sums->data() + size, dw);
        for (int64_t u = 1; u < blocks; ++u) {
          const float* p = sums->data() + u * size;
          for (int64_t e = 0; e < size; ++e) dw[e] += p[e];
        }
      });
}


// dw (kh, kw, C, F) from the padded input and the conv output's gradient (N, Ho, Wo, F).
ffi::Future Conv2dWeightGrad(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> xp,
                             ffi::Buffer<ffi::F32> dout, int64_t sh, int64_t sw,
                             ffi::ResultBuffer<ffi::F32> dw) {
  auto dd = dout.dimensions();
  auto xd = xp.dimensions();
  auto wd = dw->dimensions();
  const Geometry g{xd[0], xd[1], xd[2], xd[3], wd[0], wd[1], wd[3], dd[1], dd[2], sh, sw};
  if (ffi::Error e = check(g, wd[2]); e.failure()) return failed(e);
  return weight_grad(pool, g, xp.typed_data(), DenseGrad{dout.typed_data()}, dw->typed_data());
}

// The same for a conv - relu - 2x2 pool block, from the pooled gradient and `which`.
ffi::Future Conv2dReluPool2WeightGrad(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> xp,
                                      ffi::Buffer<ffi::F32> dpool, ffi::Buffer<ffi::S8> which,
                                      int64_t sh, int64_t sw, ffi::ResultBuffer<ffi::F32> dw) {
  auto xd = xp.dimensions();
  auto wd = dw->dimensions();
  auto pd = dpool.dimensions();
  if (sh < 1 || sw < 1) return failed(ffi::Error::InvalidArgument("jaxnets conv: stride < 1"));
  const int64_t ho = (xd[1] - wd[0]) / sh + 1, wo = (xd[2] - wd[1]) / sw + 1;
  const Geometry g{xd[0], xd[1], xd[2], xd[3], wd[0], wd[1], wd[3], ho, wo, sh, sw};
  ffi::Error e = check(g, wd[2]);
  if (e.success() && (ho < 2 || wo < 2 || pd[1] != ho / 2 || pd[2] != wo / 2 || pd[3] != g.f ||
                      which.element_count() != dpool.element_count()))
    e = ffi::Error::InvalidArgument("jaxnets conv: pooled gradient shape does not match");
  if (e.failure()) return failed(e);
  return weight_grad(pool, g, xp.typed_data(), PooledGrad{dpool.typed_data(), which.typed_data()},
                     dw->typed_data());
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxnets_conv2d_forward, Conv2dForward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // xp (N, Hp, Wp, C)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // w (kh, kw, C, F)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // bias (F,)
                                  .Attr<int64_t>("stride_h")
                                  .Attr<int64_t>("stride_w")
                                  .Ret<ffi::Buffer<ffi::F32>>());  // out (N, Ho, Wo, F)

XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxnets_conv2d_weight_grad, Conv2dWeightGrad,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // xp (N, Hp, Wp, C)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // dout (N, Ho, Wo, F)
                                  .Attr<int64_t>("stride_h")
                                  .Attr<int64_t>("stride_w")
                                  .Ret<ffi::Buffer<ffi::F32>>());  // dw (kh, kw, C, F)

XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxnets_conv2d_relu_pool2_forward, Conv2dReluPool2Forward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // xp (N, Hp, Wp, C)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // w (kh, kw, C, F)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // bias (F,)
                                  .Attr<int64_t>("stride_h")
                                  .Attr<int64_t>("stride_w")
                                  .Ret<ffi::Buffer<ffi::F32>>()   // pooled (N, Ho/2, Wo/2, F)
                                  .Ret<ffi::Buffer<ffi::S8>>());  // which (N, Ho/2, Wo/2, F)

XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxnets_conv2d_relu_pool2_weight_grad, Conv2dReluPool2WeightGrad,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // xp (N, Hp, Wp, C)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // dpool (N, Ho/2, Wo/2, F)
                                  .Arg<ffi::Buffer<ffi::S8>>()   // which (N, Ho/2, Wo/2, F)
                                  .Attr<int64_t>("stride_h")
                                  .Attr<int64_t>("stride_w")
                                  .Ret<ffi::Buffer<ffi::F32>>());  // dw (kh, kw, C, F)
