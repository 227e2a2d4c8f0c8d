// Gram matrices on top of cnnkit::gemm.
//
// Forward: G's rows are cut into bands of h channels, and band [i0, i1) is
// computed from the diagonal rightwards, G[i0:i1, i0:C] = F[:, i0:i1]^T
// F[:, i0:C], one GEMM with trans_a; the triangle below the diagonal is then
// written as the mirror of the one above. Each GEMM computes its whole band,
// so the small triangles under the diagonal inside the bands are wasted work
// (a fraction h / C of the triangle), and each call packs its panel of F
// again (about a fraction a / h, packing an element costing about as much as
// `a` multiply-adds). h = sqrt(a C) balances the two; a ~ 8 was measured with
// the AVX2 GEMM, and the time is flat within a factor of two of it.
//
// Positions are consumed in chunks, outermost: every band of a chunk is
// computed while that chunk of F sits in cache, then the next chunk is
// accumulated onto them, so F is read from memory once rather than once per
// band. Chunk bounds depend only on the sizes and the type, and each band sums
// its chunks in increasing order, so the bits do not depend on the thread
// count or on which thread ran a band.
//
// Backward: dF = F S with S = (dG + dG^T) / d. Rows of dF are independent
// (the sum runs over channels), so the work splits into bands of positions.
//
// Threads: when the items (bands, over the batch) can be shared out evenly,
// each runs on one thread with gemm_serial; otherwise the items run one after
// another and the multi-threaded gemm splits each. Both give the same bits
// (csrc/gemm.hpp), and no sum over positions is ever split between threads.
#include "gram.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <utility>
#include <vector>

#include "gemm.hpp"
#include "parallel.hpp"

namespace cnnkit {

namespace {

// Band heights are multiples of every GEMM path's register-tile height (4 or
// 6 rows), so only the last band has a partial tile.
constexpr int64_t kBandStep = 12;
// Bytes of F per chunk of positions: with the packed panels, fits in L2.
constexpr int64_t kChunkBytes = int64_t(256) << 10;
// Positions per chunk at least: one full GEMM k block.
constexpr int64_t kMinChunk = 256;
// Positions per backward band: enough rows to amortise packing S per band.
constexpr int64_t kPositionBand = 256;
// Below this many multiply-adds per thread a team costs more than it saves.
constexpr int64_t kMinMacsPerThread = int64_t(1) << 18;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// How a kernel's items (bands, over the batch) run. With several threads and
// `owner` set, the team runs them, item `it` on thread owner[it], each with
// gemm_serial; otherwise they run one after another, each split by the
// multi-threaded gemm (finer balance, but a team start per call).
struct Plan {
  int threads;
  std::vector<int> owner;
};

// Items are handed out in order, each to the least-loaded thread by cost(it);
// the team gets them when that comes within 15% of a perfect split. Owners
// are fixed in advance rather than taken from a dynamic schedule so that a
// thread keeps its bands across chunks of positions (no barrier per chunk,
// and its chunk of F stays in its own cache).
template <class Cost>
Plan plan_for(int64_t items, double macs, Cost&& cost) {
  const int nt = threads_for(static_cast<int64_t>(std::min(macs, 1e18)), kMinMacsPerThread);
  if (nt == 1) return {1, {}};
  std::vector<double> load(static_cast<size_t>(nt), 0.0);
  std::vector<int> owner(static_cast<size_t>(items));
  double total = 0;
  for (int64_t it = 0; it < items; ++it) {
    const auto least = std::min_element(load.begin(), load.end());
    *least += cost(it);
    total += cost(it);
    owner[static_cast<size_t>(it)] = static_cast<int>(least - load.begin());
  }
  if (*std::max_element(load.begin(), load.end()) * nt > 1.15 * total) owner.clear();
  return {nt, std::move(owner)};
}

// Calls body(mine) on each thread of a team of plan.threads, with `mine` the
// increasing list of the items it owns. The team may be smaller than asked
// (inside another parallel region): owners are then folded onto it. An
// exception must not leave the region; the first is rethrown after it.
template <class Body>
void run_on_team(const Plan& plan, Body&& body) {
  std::exception_ptr error;
#pragma omp parallel num_threads(plan.threads)
  {
    try {
      const int t = omp_get_thread_num(), team = omp_get_num_threads();
      std::vector<int64_t> mine;
      for (size_t it = 0; it < plan.owner.size(); ++it)
        if (plan.owner[it] % team == t) mine.push_back(static_cast<int64_t>(it));
      body(mine);
    } catch (...) {
#pragma omp critical(cnnkit_gram_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

template <class T>
T divisor(GramNorm norm, int64_t positions, int64_t channels) {
  if (norm == GramNorm::positions) return static_cast<T>(positions);
  if (norm == GramNorm::size) return static_cast<T>(double(positions) * double(channels));
  return T(1);
}

// Channels per forward band: about sqrt(8 C) (see the top of this file).
int64_t band_rows(int64_t channels) {
  const auto h = static_cast<int64_t>(std::lround(std::sqrt(8.0 * double(channels)) / kBandStep));
  return std::max<int64_t>(1, h) * kBandStep;
}

// Positions per chunk: about kChunkBytes of F, at least kMinChunk, and chunks
// of near-equal length. A function of the sizes and the type only.
int64_t chunk_length(int64_t positions, int64_t channels, int64_t elem_size) {
  const int64_t target = std::max(kMinChunk, kChunkBytes / (channels * elem_size));
  return ceil_div(positions, ceil_div(positions, target));
}

// Divides the part of rows [i0, i1) of G on and above the diagonal by d and
// mirrors it below the diagonal.
template <class T>
void finish_band(T* g, int64_t channels, int64_t i0, int64_t i1, bool scale, T d) {
  for (int64_t i = i0; i < i1; ++i)
    for (int64_t j = i; j < channels; ++j) {
      const T v = scale ? g[i * channels + j] / d : g[i * channels + j];
      g[i * channels + j] = v;
      g[j * channels + i] = v;
    }
}

}  // namespace

template <class T>
void gram(const T* x, int64_t batch, int64_t positions, int64_t channels, GramNorm norm, T* g) {
  const int64_t P = positions, C = channels;
  if (batch == 0 || C == 0) return;
  // Item `it` is band `it % bands` of batch item `it / bands`: rows
  // [i0, i1) of G. A batch item's bands come in decreasing order of work.
  const int64_t h = band_rows(C), bands = ceil_div(C, h), items = batch * bands;
  const auto rows = [&](int64_t it) {
    const int64_t i0 = (it % bands) * h;
    return std::make_pair(i0, std::min(C, i0 + h));
  };
  // Zero positions: one empty chunk, in which GEMM (k = 0) writes zeros.
  const int64_t chunk = P > 0 ? chunk_length(P, C, sizeof(T)) : 0;
  const int64_t chunks = P > 0 ? ceil_div(P, chunk) : 1;
  const bool scale = P > 0 && norm != GramNorm::none;
  const T d = divisor<T>(norm, P, C);

  // The items [first, last), all of batch item n, chunk after chunk.
  const auto run = [&](int64_t n, const int64_t* first, const int64_t* last, auto&& gemm_fn) {
    T* gn = g + n * C * C;
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t p0 = c * chunk, k = std::min(chunk, P - p0);
      for (const int64_t* it = first; it != last; ++it) {
        const auto [i0, i1] = rows(*it);
        const T* f = x + (n * P + p0) * C + i0;
        gemm_fn(true, false, i1 - i0, C - i0, k, f, C, f, C, gn + i0 * C + i0, C, c > 0);
      }
    }
    for (const int64_t* it = first; it != last; ++it) {
      const auto [i0, i1] = rows(*it);
      finish_band(gn, C, i0, i1, scale, d);
    }
  };

  const double macs = double(batch) * double(P) * double(C) * double(C + h) / 2;
  const Plan plan = plan_for(items, macs, [&](int64_t it) {
    const auto [i0, i1] = rows(it);
    return double(i1 - i0) * double(C - i0);
  });
  if (plan.owner.empty()) {
    std::vector<int64_t> all(static_cast<size_t>(bands));
    for (int64_t b = 0; b < bands; ++b) all[static_cast<size_t>(b)] = b;
    for (int64_t n = 0; n < batch; ++n) run(n, all.data(), all.data() + bands,
                                      [](auto... args) { gemm<T>(args...); });
    return;
  }
  run_on_team(plan, [&](const std::vector<int64_t>& mine) {
    // One batch item at a time: its G stays in cache while the chunks pass.
    for (size_t a = 0, b = 0; a < mine.size(); a = b) {
      const int64_t n = mine[a] / bands;
      while (b < mine.size() && mine[b] / bands == n) ++b;
      run(n, mine.data() + a, mine.data() + b, gemm_serial<T>);
    }
  });
}

template <class T>
void gram_backward(const T* x, const T* dg, int64_t batch, int64_t positions, int64_t channels,
                   GramNorm norm, T* dx) {
  const int64_t P = positions, C = channels;
  if (batch == 0 || P == 0 || C == 0) return;
  const T d = divisor<T>(norm, P, C);
  const bool scale = norm != GramNorm::none;
  // S = (dG_n + dG_n^T) / d, exactly symmetric.
  const auto symmetrise = [&](int64_t n, T* s) {
    const T* dgn = dg + n * C * C;
    for (int64_t i = 0; i < C; ++i)
      for (int64_t j = 0; j < C; ++j) {
        const T v = dgn[i * C + j] + dgn[j * C + i];
        s[i * C + j] = scale ? v / d : v;
      }
  };

  // Item `it` is band `it % bands` of batch item `it / bands`: positions
  // [p0, p0 + count).
  const int64_t bands = ceil_div(P, kPositionBand), items = batch * bands;
  const auto positions_of = [&](int64_t it) {
    const int64_t p0 = (it % bands) * kPositionBand;
    return std::make_pair(p0, std::min(kPositionBand, P - p0));
  };
  const Plan plan = plan_for(items, double(batch) * double(P) * double(C) * double(C),
                             [&](int64_t it) { return double(positions_of(it).second); });
  if (plan.owner.empty()) {
    std::vector<T> s(static_cast<size_t>(C * C));
    for (int64_t n = 0; n < batch; ++n) {
      symmetrise(n, s.data());
      gemm<T>(false, false, P, C, C, x + n * P * C, C, s.data(), C, dx + n * P * C, C, false);
    }
    return;
  }
  run_on_team(plan, [&](const std::vector<int64_t>& mine) {
    std::vector<T> s(static_cast<size_t>(C * C));  // S of batch item s_of
    int64_t s_of = -1;
    for (const int64_t it : mine) {
      const int64_t n = it / bands;
      const auto [p0, count] = positions_of(it);
      if (n != s_of) {
        symmetrise(n, s.data());
        s_of = n;
      }
      const int64_t offset = (n * P + p0) * C;
      gemm_serial<T>(false, false, count, C, C, x + offset, C, s.data(), C, dx + offset, C, false);
    }
  });
}

template void gram<float>(const float*, int64_t, int64_t, int64_t, GramNorm, float*);
template void gram<double>(const double*, int64_t, int64_t, int64_t, GramNorm, double*);
template void gram_backward<float>(const float*, const float*, int64_t, int64_t, int64_t,
                                   GramNorm, float*);
template void gram_backward<double>(const double*, const double*, int64_t, int64_t, int64_t,
                                    GramNorm, double*);

}  // namespace cnnkit
