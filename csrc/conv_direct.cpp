// The portable direct convolution loops, and dispatchers to the path of the
// running CPU.
#define CNNKIT_ISA_NS baseline
#include "conv_direct_impl.hpp"

#include <type_traits>

#include "cpu.hpp"

namespace cnnkit::detail {

#ifdef CNNKIT_HAVE_AVX512
#define CNNKIT_AVX512_PATH(name, args) \
  if (active_isa() == Isa::avx512) return avx512::name<T> args;
#else
#define CNNKIT_AVX512_PATH(name, args)
#endif
#ifdef CNNKIT_HAVE_AVX2
#define CNNKIT_AVX2_PATH(name, args) \
  if (active_isa() == Isa::avx2) return avx2::name<T> args;
#else
#define CNNKIT_AVX2_PATH(name, args)
#endif

#define CNNKIT_DISPATCH_RETURNING(type, name, params, args) \
  template <class T>                                        \
  type name params {                                        \
    CNNKIT_AVX512_PATH(name, args)                          \
    CNNKIT_AVX2_PATH(name, args)                            \
    return baseline::name<T> args;                          \
  }
#define CNNKIT_DISPATCH(name, params, args) CNNKIT_DISPATCH_RETURNING(void, name, params, args)
CNNKIT_DISPATCH(few_channels_forward,
                (const ConvProblem& p, const T* x, const T* w, const T* b, T* y, bool relu),
                (p, x, w, b, y, relu))
CNNKIT_DISPATCH(few_channels_backward_input, (const ConvProblem& p, const T* w, const T* dy, T* dx),
                (p, w, dy, dx))
CNNKIT_DISPATCH(few_channels_backward_weight,
                (const ConvProblem& p, const T* x, const T* dy, T* dw,
                 const FusedWeightGradient<T>& fused),
                (p, x, dy, dw, fused))
CNNKIT_DISPATCH(wide_direct_backward_input, (const ConvProblem& p, const T* w, const T* dy, T* dx),
                (p, w, dy, dx))
CNNKIT_DISPATCH(wide_direct_backward_weight,
                (const ConvProblem& p, const T* x, const T* dy, T* dw), (p, x, dy, dw))
CNNKIT_DISPATCH_RETURNING(bool, depthwise_forward,
                          (const ConvProblem& p, const T* x, const T* w, const T* b, T* y,
                           Activation activation, T negative_slope),
                          (p, x, w, b, y, activation, negative_slope))
CNNKIT_DISPATCH(depthwise_backward_input, (const ConvProblem& p, const T* w, const T* dy, T* dx),
                (p, w, dy, dx))
CNNKIT_DISPATCH(depthwise_backward_weight, (const ConvProblem& p, const T* x, const T* dy, T* dw),
                (p, x, dy, dw))
#undef CNNKIT_DISPATCH
#undef CNNKIT_DISPATCH_RETURNING
#undef CNNKIT_AVX2_PATH
#undef CNNKIT_AVX512_PATH

template <class T>
bool wide_direct_forward_applies(const ConvProblem& p) {
  const Geometry& g = p.g;
  return std::is_same_v<T, float> && active_isa() == Isa::avx512 && p.groups == 1 &&
         p.in_channels <= kWideDirectChannels && p.out_channels <= kWideDirectOutputs &&
         g.stride[0] == 1 && g.stride[1] == 1 && g.stride[2] == 1 && g.kernel_size() > 1 &&
         slab_fits(p);
}

template <class T>
bool wide_direct_backward_input_applies(const ConvProblem& p) {
  const Geometry& g = p.g;
  if (!std::is_same_v<T, float> || active_isa() != Isa::avx512 || p.groups != 1 ||
      p.in_channels % 16 != 0 || p.in_channels > kWideDirectOutputs || p.out_channels > 32 ||
      g.kernel_size() == 1)
    return false;
  ConvProblem t = p;
  for (int d = 0; d < kMaxSpatialDims; ++d) {
    const int64_t reach = g.dilation[d] * (g.kernel[d] - 1);
    if (g.stride[d] != 1 || g.pad_before[d] > reach || g.pad_after[d] > reach) return false;
    t.g.in[d] = g.out[d];
    // The padding of the problem wide_direct_backward_input runs.
    t.g.pad_before[d] = reach - g.pad_before[d];
    t.g.pad_after[d] = reach - g.pad_after[d];
  }
  t.in_channels = p.out_channels;
  return slab_fits(t);
}

template <class T>
bool wide_direct_backward_weight_applies(const ConvProblem& p) {
  const Geometry& g = p.g;
  if (!std::is_same_v<T, float> || active_isa() != Isa::avx512 || p.groups != 1 ||
      p.in_channels <= kFewChannels || p.in_channels > kWideDirectChannels ||
      p.out_channels > kWideDirectOutputs || g.kernel_size() == 1)
    return false;
  int64_t volume = 16;
  for (int d = 0; d < kMaxSpatialDims; ++d) {
    int64_t e = 0;
    if (g.stride[d] != 1 || !padded_extent(g.in[d], g.pad_before[d], g.pad_after[d], e) ||
        !checked_mul(volume, e, volume))
      return false;
  }
  return volume <= kMaxSlabElements;
}

template <class T>
ASource<T> patch_columns_source(const PatchColumns<T>& context) {
#ifdef CNNKIT_HAVE_AVX512
  if (active_isa() == Isa::avx512) return {&avx512::fill_patch_columns<T>, &context};
#endif
#ifdef CNNKIT_HAVE_AVX2
  if (active_isa() == Isa::avx2) return {&avx2::fill_patch_columns<T>, &context};
#endif
  return {&baseline::fill_patch_columns<T>, &context};
}

CNNKIT_INSTANTIATE_DIRECT(float)
CNNKIT_INSTANTIATE_DIRECT(double)
template bool wide_direct_forward_applies<float>(const ConvProblem&);
template bool wide_direct_forward_applies<double>(const ConvProblem&);
template bool wide_direct_backward_input_applies<float>(const ConvProblem&);
template bool wide_direct_backward_input_applies<double>(const ConvProblem&);
template bool wide_direct_backward_weight_applies<float>(const ConvProblem&);
template bool wide_direct_backward_weight_applies<double>(const ConvProblem&);
template ASource<float> patch_columns_source<float>(const PatchColumns<float>&);
template ASource<double> patch_columns_source<double>(const PatchColumns<double>&);

}  // namespace cnnkit::detail
