// Gram matrices on top of cnnkit::gemm.
//
// Forward: G = F^T F is symmetric, so gemm_upper computes only the register
// tiles that reach the upper triangle (the waste is the tiles straddling
// the diagonal, a fraction of about MR / C of the triangle), and the
// triangle below is then written as the mirror of the one above. One GEMM
// per batch item over all positions: the GEMM blocks positions into cache
// itself (its k blocks) and reads F about once per block of columns.
//
// Backward: dF = F S with S = (dG + dG^T) / d. Rows of dF are independent
// (the sum runs over channels), so the work splits into bands of positions.
//
// Threads: when the items (batch items forward; bands of positions over the
// batch backward) can be shared out evenly, each runs on one thread with the
// serial GEMM; otherwise the items run one after another and the
// multi-threaded GEMM splits each. Both give the same bits
// (csrc/gemm.hpp), and no sum over positions is ever split between threads.
#include "gram.hpp"

#include <omp.h>

#include <algorithm>
#include <exception>
#include <utility>
#include <vector>

#include "gemm.hpp"
#include "interrupt.hpp"
#include "parallel.hpp"

namespace cnnkit {

namespace {

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

// Divides the upper triangle of G (C x C) by d and mirrors it below the
// diagonal.
template <class T>
void finish(T* g, int64_t channels, bool scale, T d) {
  for (int64_t i = 0; i < channels; ++i)
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
  const bool scale = P > 0 && norm != GramNorm::none;
  const T d = divisor<T>(norm, P, C);
  // Zero positions: GEMM (k = 0) writes zeros.
  const auto item = [&](int64_t n, bool serial) {
    const T* f = x + n * P * C;
    T* gn = g + n * C * C;
    if (serial)
      gemm_upper_serial<T>(true, false, C, P, f, C, f, C, gn, C, false);
    else
      gemm_upper<T>(true, false, C, P, f, C, f, C, gn, C, false);
    finish(gn, C, scale, d);
  };
  const double macs = double(batch) * double(P) * double(C) * double(C) / 2;
  const Plan plan = plan_for(batch, macs, [](int64_t) { return 1.0; });
  if (plan.owner.empty()) {
    for (int64_t n = 0; n < batch; ++n) item(n, false);
    return;
  }
  const StopToken stop;
  run_on_team(plan, [&](const std::vector<int64_t>& mine) {
    for (const int64_t n : mine)
      if (!stop) item(n, true);
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
  const StopToken stop;
  run_on_team(plan, [&](const std::vector<int64_t>& mine) {
    std::vector<T> s(static_cast<size_t>(C * C));  // S of batch item s_of
    int64_t s_of = -1;
    for (const int64_t it : mine) {
      if (stop) break;
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
