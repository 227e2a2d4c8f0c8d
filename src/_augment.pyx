# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Pixel loops of cnnkit.image and cnnkit.augment (Cython, fused uint8/float32).

Every kernel writes into a caller-allocated output batch ``(N, H, W, C)`` and
runs without the GIL, parallel over output rows of the whole batch (prange over
``N * H``), so a single image uses every thread too. Each output pixel depends
only on its own parameters, so results do not depend on the thread count.
Arguments are validated by the Python callers (cnnkit.image, cnnkit.augment),
which also make the inputs C-contiguous: the loops walk rows through pointers
so that the compiler can vectorise them.

uint8 results are rounded half up and saturated to [0, 255]; float32 results
are neither rounded nor clipped. Geometry uses pixel centres at ``i + 0.5``:
pixel ``(row i, column j)`` covers ``[j, j + 1) x [i, i + 1)``. uint8 colour
maps are tables built in float64 (``colour_tables_u8``, ``lut``); affine ones run as
AVX-512 VBMI lookups of those tables (``lut_vbmi``) where the CPU has them, else
as an integer affine fitted to the tables (``affine_u8``), equal to them.
Random draws that a kernel makes itself (``add_gaussian_seeded``) are NumPy's
PCG64 streams bit for bit, each task jumping ahead to its span.
"""

from cython.parallel cimport prange, threadid
from libc.math cimport ceil, exp, fabsf, floor, fmod, log, nearbyint, sqrt
from libc.stdlib cimport free, malloc
from libc.string cimport memcmp, memcpy

ctypedef fused pixel:
    unsigned char
    float

# Border modes and interpolations as the Python callers number them.
cdef enum:
    BORDER_CONSTANT = 0
    BORDER_REFLECT = 1
    BORDER_REPLICATE = 2
    INTERP_NEAREST = 0
    INTERP_BILINEAR = 1


cdef inline void _store(pixel* out, double value) noexcept nogil:
    if pixel is float:
        out[0] = <float>value
    else:
        if value <= 0.0:
            out[0] = 0
        elif value >= 255.0:
            out[0] = 255
        else:
            out[0] = <unsigned char>(value + 0.5)


cdef inline unsigned char _saturate(float value) noexcept nogil:
    # branch-free, so that row loops vectorise
    value = value + 0.5
    value = 0.0 if value < 0.0 else value
    value = 255.0 if value > 255.0 else value
    return <unsigned char>value


cdef inline void _put(pixel* out, float value) noexcept nogil:
    # _store for float32 sums of uint8 values (bounded, never NaN): _saturate's
    # result, clamped as an int (conditional moves in scalar code, not branches)
    cdef int v
    if pixel is float:
        out[0] = value
    else:
        v = <int>(value + 0.5)
        v = 0 if v < 0 else v
        out[0] = <unsigned char>(255 if v > 255 else v)


cdef inline Py_ssize_t _floor(double x) noexcept nogil:
    # floor() is a libm call on the baseline x86-64 ISA (no SSE4.1 round); this is
    # exact for the coordinates here (far inside the Py_ssize_t range)
    cdef Py_ssize_t i = <Py_ssize_t>x
    return i - 1 if x < i else i


cdef inline Py_ssize_t _border(Py_ssize_t i, Py_ssize_t n, int mode) noexcept nogil:
    """Index ``i`` resolved inside ``[0, n)``; -1 means "use the fill value"."""
    cdef Py_ssize_t period
    if 0 <= i < n:
        return i
    if mode == BORDER_CONSTANT:
        return -1
    if mode == BORDER_REPLICATE:
        return 0 if i < 0 else n - 1
    # reflect without repeating the edge pixel (numpy's "reflect", OpenCV's REFLECT_101)
    if n == 1:
        return 0
    period = 2 * n - 2
    i = i % period
    if i < 0:
        i += period
    if i >= n:
        i = period - i
    return i


def resample(const pixel[:, :, :, ::1] src, pixel[:, :, :, ::1] dst,
             const Py_ssize_t[:, :, ::1] row_index, const float[:, :, ::1] row_weight,
             const Py_ssize_t[:, :, ::1] col_index, const float[:, :, ::1] col_weight,
             const Py_ssize_t[:, ::1] col_span, float[:, ::1] scratch, int threads):
    """``dst[n, i, j] = sum_b cw[n', j, b] sum_a rw[n', i, a] src[n, ri[n', i, a], ci[n', j, b]]``.

    The tap tables are per image (``n' = n``) or shared (their first axis of
    length 1); resize, crop-and-resize and nearest/bilinear/area all reduce to
    this. Indices are absolute in ``src``, so a crop is only an index offset;
    ``col_span[n']`` is the range of input columns the column taps use.
    Separable: a vertical pass over whole rows (contiguous, vectorised) into
    ``scratch`` ``(threads, W * C)``, then the horizontal taps. Weights and sums
    are float32: twice the vector width of float64, and their rounding (about
    1e-7 of full scale per tap) stays far inside uint8's half-unit rounding step
    and the float32 tolerance of the tests.
    """
    cdef Py_ssize_t n_img = dst.shape[0], out_h = dst.shape[1], out_w = dst.shape[2]
    cdef Py_ssize_t chans = dst.shape[3], ky = row_index.shape[2], kx = col_index.shape[2]
    cdef bint shared_rows = row_index.shape[0] == 1, shared_cols = col_index.shape[0] == 1
    cdef Py_ssize_t task, n, i, j, c, a, b, k, tr, tc, lo, hi
    cdef float wr, wt, acc, acc1, acc2
    cdef float* tmp
    cdef const float* cw
    cdef const Py_ssize_t* ci
    cdef const pixel* line
    cdef pixel* out
    for task in prange(n_img * out_h, nogil=True, num_threads=threads, schedule="static"):
        n = task // out_h
        i = task % out_h
        tr = 0 if shared_rows else n
        tc = 0 if shared_cols else n
        tmp = &scratch[threadid(), 0]
        lo = col_span[tc, 0] * chans
        hi = col_span[tc, 1] * chans
        for k in range(lo, hi):
            tmp[k] = 0.0
        for a in range(ky):
            wr = row_weight[tr, i, a]
            if wr == 0.0:
                continue
            line = &src[n, row_index[tr, i, a], 0, 0]
            for k in range(lo, hi):
                tmp[k] = tmp[k] + wr * line[k]
        out = &dst[n, i, 0, 0]
        cw = &col_weight[tc, 0, 0]
        ci = &col_index[tc, 0, 0]
        if chans == 3:
            for j in range(out_w):
                acc = 0.0
                acc1 = 0.0
                acc2 = 0.0
                for b in range(kx):
                    wt = cw[j * kx + b]
                    k = ci[j * kx + b] * 3
                    acc = acc + wt * tmp[k]
                    acc1 = acc1 + wt * tmp[k + 1]
                    acc2 = acc2 + wt * tmp[k + 2]
                _put(out + 3 * j, acc)
                _put(out + 3 * j + 1, acc1)
                _put(out + 3 * j + 2, acc2)
        else:
            for j in range(out_w):
                for c in range(chans):
                    acc = 0.0
                    for b in range(kx):
                        acc = acc + cw[j * kx + b] * tmp[ci[j * kx + b] * chans + c]
                    _put(out + j * chans + c, acc)


cdef enum:
    # output rows per task of resample_linear: rows of a band share the cached
    # horizontal passes of their input rows (the two rows cached at a band's start are
    # recomputed; 56 rows = 4 bands of a 224-row output, still tasks for every thread)
    LINEAR_BAND = 56


cdef extern from *:
    # The loops of resample_linear. The blends and the conversion are compiled twice
    # (AVX2 and the baseline SSE2, 4 floats at a time) and picked at run time; both
    # clones do the same float32 operations per element (no FMA), so the same bits.
    # The gather stays scalar: AVX2's gather instructions measured slower here (1.53
    # against 1.40 ms for 16 resizes 180 -> 224 on a Sapphire Rapids Xeon).
    """
    #include <stddef.h>
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
    #define CNNKIT_CLONES __attribute__((target_clones("avx2", "default")))
    #else
    #define CNNKIT_CLONES
    #endif
    static void cnnkit_linear_gather(
            const float* __restrict conv, const int* __restrict i0, const int* __restrict i1,
            const float* __restrict w0, const float* __restrict w1, float* __restrict out,
            ptrdiff_t n) {
        for (ptrdiff_t k = 0; k < n; ++k) out[k] = w0[k] * conv[i0[k]] + w1[k] * conv[i1[k]];
    }
    #if defined(__SSE2__)
    #include <emmintrin.h>
    #endif
    /* cnnkit_linear_gather for 3 channels: a pixel's 3 values as one 4-float vector op
       (the same multiplies and add per value, so the same bits); the 4th lane reads the
       next value of the row (conv has room for it) and is overwritten by the next pixel,
       the last pixel goes by value so that no store leaves the row. */
    static void cnnkit_linear_gather3(
            const float* __restrict conv, const int* __restrict i0, const int* __restrict i1,
            const float* __restrict w0, const float* __restrict w1, float* __restrict out,
            ptrdiff_t pixels) {
        ptrdiff_t j = 0;
    #if defined(__SSE2__)
        for (; j + 1 < pixels; ++j) {
            ptrdiff_t k = 3 * j;
            __m128 a = _mm_mul_ps(_mm_set1_ps(w0[k]), _mm_loadu_ps(conv + i0[k]));
            __m128 b = _mm_mul_ps(_mm_set1_ps(w1[k]), _mm_loadu_ps(conv + i1[k]));
            _mm_storeu_ps(out + k, _mm_add_ps(a, b));
        }
    #endif
        for (ptrdiff_t k = 3 * j; k < 3 * pixels; ++k)
            out[k] = w0[k] * conv[i0[k]] + w1[k] * conv[i1[k]];
    }
    CNNKIT_CLONES static void cnnkit_linear_convert_u8(
            const unsigned char* __restrict line, float* __restrict conv, ptrdiff_t n) {
        for (ptrdiff_t k = 0; k < n; ++k) conv[k] = (float)line[k] + 0.5f;
    }
    CNNKIT_CLONES static void cnnkit_linear_blend_u8(
            const float* __restrict a, const float* __restrict b, float wa, float wb,
            unsigned char* __restrict out, ptrdiff_t n) {
        for (ptrdiff_t k = 0; k < n; ++k) out[k] = (unsigned char)(int)(wa * a[k] + wb * b[k]);
    }
    CNNKIT_CLONES static void cnnkit_linear_blend_f32(
            const float* __restrict a, const float* __restrict b, float wa, float wb,
            float* __restrict out, ptrdiff_t n) {
        for (ptrdiff_t k = 0; k < n; ++k) out[k] = wa * a[k] + wb * b[k];
    }
    """
    void cnnkit_linear_gather(const float* conv, const int* i0, const int* i1,
                              const float* w0, const float* w1, float* out,
                              Py_ssize_t n) noexcept nogil
    void cnnkit_linear_gather3(const float* conv, const int* i0, const int* i1,
                               const float* w0, const float* w1, float* out,
                               Py_ssize_t pixels) noexcept nogil
    void cnnkit_linear_convert_u8(const unsigned char* line, float* conv,
                                  Py_ssize_t n) noexcept nogil
    void cnnkit_linear_blend_u8(const float* a, const float* b, float wa, float wb,
                                unsigned char* out, Py_ssize_t n) noexcept nogil
    void cnnkit_linear_blend_f32(const float* a, const float* b, float wa, float wb,
                                 float* out, Py_ssize_t n) noexcept nogil


cdef inline void _linear_row(const pixel* line, float* conv, float* out, Py_ssize_t lo,
                             Py_ssize_t hi, Py_ssize_t width, Py_ssize_t chans,
                             const int* ci, const float* cw) noexcept nogil:
    """The horizontal pass of one input row: ``out[k] = cw[k] row[ci[k]] + cw'[k] row[ci'[k]]``
    over the ``width`` output values (``ci' = ci + width``, likewise ``cw'``), the row first
    converted to float32 over its values ``[lo, hi)`` so that the gathers load floats.
    uint8 rows get 0.5 added there: the vertical blend's weights sum to 1, so its sums come
    out offset by the 0.5 of rounding half up."""
    cdef Py_ssize_t k
    if pixel is float:
        for k in range(lo, hi):
            conv[k] = line[k]
    else:
        cnnkit_linear_convert_u8(line + lo, conv + lo, hi - lo)
    if chans == 3:
        cnnkit_linear_gather3(conv, ci, ci + width, cw, cw + width, out, width // 3)
    else:
        cnnkit_linear_gather(conv, ci, ci + width, cw, cw + width, out, width)


def resample_linear(const pixel[:, :, :, ::1] src, pixel[:, :, :, ::1] dst,
                    const Py_ssize_t[:, :, ::1] row_index, const float[:, :, ::1] row_weight,
                    const int[:, :, ::1] col_index, const float[:, :, ::1] col_weight,
                    const Py_ssize_t[:, ::1] col_span, float[:, ::1] scratch, int threads):
    """:func:`resample` for two taps per axis (bilinear), horizontal pass first.

    The weights must be non-negative with sums of 1 per output pixel and axis
    (bilinear and area tables are), so that uint8 sums need no clamping.

    Each input row is resampled horizontally once per band of ``LINEAR_BAND``
    output rows (two rows cached: consecutive output rows share their input
    rows when enlarging), then each output row is the vectorised two-tap blend
    of two cached rows, rounded and saturated in the same loop. The horizontal
    gathers read the row converted to float32; their tables are per output value
    (``col_index`` and ``col_weight`` are ``(T, 2, out_w * C)``: the first tap of all
    values, then the second; indices into the row's ``W * C`` values). Tasks are
    (image, band), so the result does not depend on the thread count. ``scratch``
    is ``(threads, W * C + 4 + 2 * out_w * C)`` float32 (4 values of slack after the
    converted row for the 3-channel gather's vector loads).
    """
    cdef Py_ssize_t n_img = dst.shape[0], out_h = dst.shape[1], out_w = dst.shape[2]
    cdef Py_ssize_t chans = dst.shape[3], row_len = src.shape[2] * src.shape[3]
    cdef Py_ssize_t bands = (out_h + LINEAR_BAND - 1) // LINEAR_BAND
    cdef bint shared_rows = row_index.shape[0] == 1, shared_cols = col_index.shape[0] == 1
    cdef Py_ssize_t task, n, i, tr, tc, lo, hi, ra, rb, tag0, tag1, stop, width
    cdef float wa, wb
    cdef float* conv
    cdef float* buf0
    cdef float* buf1
    cdef float* ha
    cdef float* hb
    cdef const float* cw
    cdef const int* ci
    cdef pixel* out
    width = out_w * chans
    for task in prange(n_img * bands, nogil=True, num_threads=threads, schedule="static"):
        n = task // bands
        i = (task % bands) * LINEAR_BAND
        stop = i + LINEAR_BAND
        if stop > out_h:
            stop = out_h
        tr = 0 if shared_rows else n
        tc = 0 if shared_cols else n
        conv = &scratch[threadid(), 0]
        buf0 = conv + row_len + 4
        buf1 = buf0 + width
        lo = col_span[tc, 0] * chans
        hi = col_span[tc, 1] * chans
        cw = &col_weight[tc, 0, 0]
        ci = &col_index[tc, 0, 0]
        tag0 = -1
        tag1 = -1
        while i < stop:
            ra = row_index[tr, i, 0]
            rb = row_index[tr, i, 1]
            # keep a cached row that this output row needs; fill the other slot
            if tag0 != ra and tag1 != ra:
                if tag0 == rb:
                    _linear_row(&src[n, ra, 0, 0], conv, buf1, lo, hi, width, chans, ci, cw)
                    tag1 = ra
                else:
                    _linear_row(&src[n, ra, 0, 0], conv, buf0, lo, hi, width, chans, ci, cw)
                    tag0 = ra
            if tag0 != rb and tag1 != rb:
                if tag0 == ra:
                    _linear_row(&src[n, rb, 0, 0], conv, buf1, lo, hi, width, chans, ci, cw)
                    tag1 = rb
                else:
                    _linear_row(&src[n, rb, 0, 0], conv, buf0, lo, hi, width, chans, ci, cw)
                    tag0 = rb
            ha = buf0 if tag0 == ra else buf1
            hb = buf0 if tag0 == rb else buf1
            wa = row_weight[tr, i, 0]
            wb = row_weight[tr, i, 1]
            out = &dst[n, i, 0, 0]
            if pixel is float:
                cnnkit_linear_blend_f32(ha, hb, wa, wb, out, width)
            else:
                # a convex combination of convex combinations of uint8 values (+ 0.5,
                # see _linear_row) lies in [0.5, 255.5] up to float32 rounding, far
                # inside [0, 256): truncation rounds half up without a clamp
                cnnkit_linear_blend_u8(ha, hb, wa, wb, out, width)
            i = i + 1


cdef void _halve_row(const unsigned char* top, const unsigned char* bottom, unsigned char* out,
                     Py_ssize_t out_w, Py_ssize_t chans, unsigned short* sums) noexcept nogil:
    """One output row of a 2x2 uint8 area shrink: ``(sum of 4 + 2) >> 2``, exactly the
    half-up rounded mean. Each step is a contiguous loop the compiler vectorises
    (column pair sums, then the means of all pixel pairs); only the last step,
    keeping every other pixel, is scalar. ``sums`` has room for 3 bytes per input value
    (the uint16 sums, then the uint8 means)."""
    cdef Py_ssize_t row = 2 * out_w * chans, k, j
    cdef unsigned char* means = <unsigned char*>(sums + row)
    cdef unsigned int word
    for k in range(row):
        sums[k] = top[k] + bottom[k]
    for k in range(row - chans):
        means[k] = <unsigned char>((sums[k] + sums[k + chans] + 2) >> 2)
    if chans == 3:
        # 3-byte pixels as 4-byte words (see flip); the last one byte by byte
        for j in range(out_w - 1):
            memcpy(&word, means + 6 * j, 4)
            memcpy(out + 3 * j, &word, 4)
        j = out_w - 1
        out[3 * j] = means[6 * j]
        out[3 * j + 1] = means[6 * j + 1]
        out[3 * j + 2] = means[6 * j + 2]
    else:
        for j in range(out_w):
            for k in range(chans):
                out[j * chans + k] = means[2 * j * chans + k]


def area_shrink(const pixel[:, :, :, ::1] src, pixel[:, :, :, ::1] dst, Py_ssize_t fy,
                Py_ssize_t fx, float[:, ::1] scratch, int threads):
    """``dst[n, i, j]`` is the mean of the ``fy x fx`` block of ``src[n]`` at ``(i fy, j fx)``.

    The integer-factor case of area resampling (a 2x shrink is the common one):
    block sums instead of tap tables. ``scratch`` ``(threads, W * C)`` holds a
    row of column sums; float32 sums of uint8 values are exact (below 2^24), and
    uint8 means are rounded half up exactly: ``floor((sum + k // 2 + 0.5) / k)``
    (``k = fy fx``) equals ``floor(sum / k + 0.5)``, and the extra 0.5 keeps the
    rounded reciprocal from ever dropping an exact quotient below its integer.
    """
    cdef Py_ssize_t n_img = dst.shape[0], out_h = dst.shape[1], out_w = dst.shape[2]
    cdef Py_ssize_t chans = dst.shape[3], row = src.shape[2] * src.shape[3]
    cdef Py_ssize_t task, n, i, j, c, a, b, k
    cdef double inv = 1.0 / (fy * fx), half = (fy * fx) // 2 + 0.5
    cdef float acc
    cdef float* tmp
    cdef const pixel* line
    cdef pixel* out
    for task in prange(n_img * out_h, nogil=True, num_threads=threads, schedule="static"):
        n = task // out_h
        i = task % out_h
        tmp = &scratch[threadid(), 0]
        out = &dst[n, i, 0, 0]
        if pixel is not float:
            if fy == 2 and fx == 2:
                _halve_row(&src[n, 2 * i, 0, 0], &src[n, 2 * i + 1, 0, 0], out, out_w, chans,
                           <unsigned short*>tmp)
                continue
        line = &src[n, i * fy, 0, 0]
        for k in range(row):
            tmp[k] = line[k]
        for a in range(1, fy):
            line = &src[n, i * fy + a, 0, 0]
            for k in range(row):
                tmp[k] = tmp[k] + line[k]
        for j in range(out_w):
            for c in range(chans):
                acc = 0.0
                for b in range(fx):
                    acc = acc + tmp[(j * fx + b) * chans + c]
                if pixel is float:
                    out[j * chans + c] = <float>(acc * inv)
                else:
                    out[j * chans + c] = <unsigned char>((acc + half) * inv)


cdef inline void _sample(const pixel* image, Py_ssize_t h, Py_ssize_t w, Py_ssize_t chans,
                         double x, double y, int interp, int border, double fill,
                         pixel* out) noexcept nogil:
    """Write the ``chans`` values of ``image`` at the continuous point ``(x, y)`` to ``out``."""
    cdef Py_ssize_t x0, y0, xa, xb, ya, yb, c
    cdef double fx, fy, v00, v01, v10, v11, w00, w01, w10, w11
    cdef const pixel* p00
    cdef const pixel* p01
    cdef const pixel* p10
    cdef const pixel* p11
    if interp == INTERP_NEAREST:
        xa = _border(_floor(x), w, border)
        ya = _border(_floor(y), h, border)
        if xa < 0 or ya < 0:
            for c in range(chans):
                _store(out + c, fill)
        else:
            p00 = image + (ya * w + xa) * chans
            for c in range(chans):
                out[c] = p00[c]
        return
    x = x - 0.5
    y = y - 0.5
    x0 = _floor(x)
    y0 = _floor(y)
    fx = x - x0
    fy = y - y0
    if 0 <= x0 and x0 + 1 < w and 0 <= y0 and y0 + 1 < h:
        # inside: the four taps are plain loads
        p00 = image + (y0 * w + x0) * chans
        p01 = p00 + chans
        p10 = p00 + w * chans
        p11 = p10 + chans
        w00 = (1.0 - fx) * (1.0 - fy)
        w01 = fx * (1.0 - fy)
        w10 = (1.0 - fx) * fy
        w11 = fx * fy
        for c in range(chans):
            _store(out + c, p00[c] * w00 + p01[c] * w01 + p10[c] * w10 + p11[c] * w11)
        return
    xa = _border(x0, w, border)
    xb = _border(x0 + 1, w, border)
    ya = _border(y0, h, border)
    yb = _border(y0 + 1, h, border)
    for c in range(chans):
        v00 = fill if (xa < 0 or ya < 0) else image[(ya * w + xa) * chans + c]
        v01 = fill if (xb < 0 or ya < 0) else image[(ya * w + xb) * chans + c]
        v10 = fill if (xa < 0 or yb < 0) else image[(yb * w + xa) * chans + c]
        v11 = fill if (xb < 0 or yb < 0) else image[(yb * w + xb) * chans + c]
        _store(out + c, (v00 * (1.0 - fx) + v01 * fx) * (1.0 - fy) + (v10 * (1.0 - fx) + v11 * fx) * fy)


from libc.math cimport M_PI, cos, fabs, isfinite, sin, tan
from libc.string cimport memset


cdef inline bint _invert_affine(const double* m, double* out) noexcept nogil:
    """``out`` the 2x3 inverse of the 2x3 map ``m`` (both row by row), in closed form;
    False (``out`` not written) where ``|det| < 1e-12``."""
    cdef double det = m[0] * m[4] - m[1] * m[3], i00, i01, i10, i11
    if fabs(det) < 1e-12:
        return False
    i00 = m[4] / det
    i01 = -m[1] / det
    i10 = -m[3] / det
    i11 = m[0] / det
    out[0] = i00
    out[1] = i01
    out[2] = -(i00 * m[2] + i01 * m[5])
    out[3] = i10
    out[4] = i11
    out[5] = -(i10 * m[2] + i11 * m[5])
    return True


def invert_affines(const double[:, :, ::1] maps, double[:, :, ::1] out):
    """``out[n]`` the 2x3 inverse of the 2x3 map ``maps[n]``, in closed form; the index
    of the first map with ``|det| < 1e-12`` (not written), or -1.

    In native code because a batch transform inverts a map per image, and a dozen
    NumPy calls on ``(N, 2, 3)`` arrays cost more than the arithmetic.
    """
    cdef Py_ssize_t n
    for n in range(maps.shape[0]):
        if not _invert_affine(&maps[n, 0, 0], &out[n, 0, 0]):
            return n
    return -1


cdef double DEG_TO_RAD = M_PI / 180.0  # Python's math.radians factor


def warp_inverses(const double[:, ::1] params, double cx, double cy, double[:, :, ::1] out):
    """The inverses (output to input point) of the maps that cnnkit.image's ``_affine_map``
    makes about the centre ``(cx, cy)`` from ``params`` rows ``(angle, sx, sy, hx, hy,
    tx, ty)`` (degrees, scales, shear degrees, pixels), inverted as ``invert_affines``:
    the warp transforms' batch path (a batch's Python, a map per image, was most of
    its serial part). The same float64 operations in the same order as the Python
    (libm's cos, sin and tan are what ``math`` calls; no FMA in this build), so the
    same bits. Returns the index of the first map that is not finite or not invertible
    (``out[n]`` unwritten; the general path raises there), or -1."""
    cdef Py_ssize_t n, k
    cdef double m[6]
    cdef double a, c, s, tan_x, tan_y, sx, sy
    for n in range(params.shape[0]):
        a = params[n, 0] * DEG_TO_RAD
        c = cos(a)
        s = sin(a)
        tan_x = tan(params[n, 3] * DEG_TO_RAD)
        tan_y = tan(params[n, 4] * DEG_TO_RAD)
        sx = params[n, 1]
        sy = params[n, 2]
        m[0] = (c + s * tan_y) * sx
        m[1] = (c * tan_x + s) * sy
        m[3] = (-s + c * tan_y) * sx
        m[4] = (-s * tan_x + c) * sy
        m[2] = cx - (m[0] * cx + m[1] * cy) + params[n, 5]
        m[5] = cy - (m[3] * cx + m[4] * cy) + params[n, 6]
        for k in range(6):
            if not isfinite(m[k]):
                return n
        if not _invert_affine(m, &out[n, 0, 0]):
            return n
    return -1


def warp_affine(const pixel[:, :, :, ::1] src, pixel[:, :, :, ::1] dst,
                const double[:, :, ::1] inverse, int interp, int border, double fill,
                int threads):
    """``dst[n]`` at point ``p`` is ``src[n]`` sampled at ``inverse[n'] @ (p, 1)``.

    ``inverse`` is ``(N or 1, 2, 3)``: the map from output to input points.
    """
    cdef Py_ssize_t n_img = dst.shape[0], out_h = dst.shape[1], out_w = dst.shape[2]
    cdef Py_ssize_t chans = dst.shape[3], h = src.shape[1], w = src.shape[2]
    cdef bint shared = inverse.shape[0] == 1
    cdef Py_ssize_t task, n, i, j, m
    cdef double u, v, x, y, a00, a01, a02, a10, a11, a12
    cdef const pixel* image
    cdef pixel* out
    # rows of 16 in dynamic chunks: rows cost more or less by how much falls outside
    for task in prange(n_img * out_h, nogil=True, num_threads=threads, schedule="dynamic",
                       chunksize=16):
        n = task // out_h
        i = task % out_h
        m = 0 if shared else n
        a00 = inverse[m, 0, 0]
        a01 = inverse[m, 0, 1]
        a02 = inverse[m, 0, 2]
        a10 = inverse[m, 1, 0]
        a11 = inverse[m, 1, 1]
        a12 = inverse[m, 1, 2]
        image = &src[n, 0, 0, 0]
        out = &dst[n, i, 0, 0]
        v = i + 0.5
        for j in range(out_w):
            u = j + 0.5
            x = a00 * u + a01 * v + a02
            y = a10 * u + a11 * v + a12
            _sample(image, h, w, chans, x, y, interp, border, fill, out + j * chans)


def remap(const pixel[:, :, :, ::1] src, pixel[:, :, :, ::1] dst,
          const float[:, :, ::1] dx, const float[:, :, ::1] dy,
          int interp, int border, double fill, int threads):
    """``dst[n, i, j]`` is ``src[n]`` sampled at ``(j + 0.5 + dx[n, i, j], i + 0.5 + dy[n, i, j])``."""
    cdef Py_ssize_t n_img = dst.shape[0], out_h = dst.shape[1], out_w = dst.shape[2]
    cdef Py_ssize_t chans = dst.shape[3], h = src.shape[1], w = src.shape[2]
    cdef Py_ssize_t task, n, i, j
    cdef double x, y
    cdef const pixel* image
    cdef const float* fx
    cdef const float* fy
    cdef pixel* out
    # rows of 16 in dynamic chunks: rows cost more or less by how much falls outside
    for task in prange(n_img * out_h, nogil=True, num_threads=threads, schedule="dynamic",
                       chunksize=16):
        n = task // out_h
        i = task % out_h
        image = &src[n, 0, 0, 0]
        out = &dst[n, i, 0, 0]
        fx = &dx[n, i, 0]
        fy = &dy[n, i, 0]
        for j in range(out_w):
            x = j + 0.5 + fx[j]
            y = i + 0.5 + fy[j]
            _sample(image, h, w, chans, x, y, interp, border, fill, out + j * chans)


# Fixed-point bilinear sampling of uint8 images (warp_affine_u8): coordinates in
# 1/2048 pixel, so each output is the exact half-up rounding of the bilinear value
# at a point at most 1/4096 pixel away in x and y from the true one. That moves a
# value by at most 255 / 2048 < 1/8, so results are within 1 of the float64
# reference (exact except near a rounding boundary), and the products fit int32.
cdef enum:
    FRAC_BITS = 11
    FRAC_ONE = 1 << FRAC_BITS
    FRAC_ROUND = 1 << (2 * FRAC_BITS - 1)
    # Coordinates are clamped to +-2^18 pixels before the int32 conversion (callers
    # use this kernel for images of at most 2^17 pixels a side, so a clamped point
    # stays outside); adding 2^30 makes every value positive, so truncation is floor.
    COORD_LIMIT = 1 << 18
    COORD_OFFSET = 1 << 30


cdef extern from *:
    # The interior span of warp_affine_u8 for 3-channel images, 16 pixels at a time with
    # AVX-512 (F/BW/DQ/VBMI: Ice Lake, Sapphire Rapids, Zen 4), picked at run time. The
    # scalar loop spends most of its time on the 12 tap loads and the byte shuffling of
    # 3-byte pixels; here one 8-byte gather per pixel and row fetches both horizontal taps,
    # one byte permute per channel lines them up as 16-bit (left, right) pairs, and
    # vpmaddwd with (2048 - fx, fx) gives ``(left << 11) + (right - left) fx`` exactly. The
    # arithmetic is the scalar loop's, in int32, so the bytes are identical.
    """
    #include <stddef.h>
    #include <stdint.h>
    static inline void cnnkit_warp_pixel3(const unsigned char* image, ptrdiff_t row, int X,
                                          int Y, unsigned char* o) {
        int fx = X & 2047, fy = Y & 2047, c;
        const unsigned char* p = image + (ptrdiff_t)(Y >> 11) * row + (ptrdiff_t)(X >> 11) * 3;
        const unsigned char* q = p + row;
        for (c = 0; c < 3; ++c) {
            int top = (p[c] << 11) + (p[c + 3] - p[c]) * fx;
            int bottom = (q[c] << 11) + (q[c + 3] - q[c]) * fx;
            o[c] = (unsigned char)(((top << 11) + (bottom - top) * fy + (1 << 21)) >> 22);
        }
    }
    #if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
    #include <immintrin.h>
    #define CNNKIT_WARP_AVX512 \\
        __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vbmi")))
    static int cnnkit_warp_has_avx512(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
               && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")
               && __builtin_cpu_supports("avx512vbmi");
    }
    /* output byte m of 16 pixels: byte m % 3 of the dword of pixel m / 3 */
    static const unsigned char cnnkit_warp_pack3[64] = {
        0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, 16, 17, 18, 20, 21, 22, 24, 25, 26, 28,
        29, 30, 32, 33, 34, 36, 37, 38, 40, 41, 42, 44, 45, 46, 48, 49, 50, 52, 53, 54,
        56, 57, 58, 60, 61, 62};
    CNNKIT_WARP_AVX512 static void cnnkit_warp_span3_avx512(
            const unsigned char* image, ptrdiff_t row, ptrdiff_t total, const int* cx,
            const int* cy, ptrdiff_t j, ptrdiff_t stop, unsigned char* out) {
        /* int32 gather offsets: the vector loop needs the image below 2 GiB */
        if (total < ((ptrdiff_t)1 << 31) - 64 && stop - j >= 16) {
            const __m512i frac = _mm512_set1_epi32(2047), one = _mm512_set1_epi32(2048);
            const __m512i round = _mm512_set1_epi32(1 << 21);
            const __m512i rowv = _mm512_set1_epi32((int)row);
            /* the 8-byte loads of a tap pair end inside the image (the last pixel's
               bottom pair would read 2 bytes past it) */
            const __m512i last = _mm512_set1_epi32((int)(total - row - 8));
            const __m512i pack = _mm512_loadu_si512((const void*)cnnkit_warp_pack3);
            const __mmask64 pairs = 0x5555555555555555ULL;
            /* channel c of pixel k: bytes 8k + c (left) and 8k + 3 + c (right) of the two
               gathers' 128 bytes, as the low bytes of the two words of dword k */
            const __m512i lane8 = _mm512_slli_epi32(
                _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), 3);
            const __m512i pick = _mm512_or_si512(lane8, _mm512_slli_epi32(
                _mm512_add_epi32(lane8, _mm512_set1_epi32(3)), 16));
            const __m512i pick1 = _mm512_add_epi32(pick, _mm512_set1_epi32(0x10001));
            const __m512i pick2 = _mm512_add_epi32(pick, _mm512_set1_epi32(0x20002));
            for (; j + 16 <= stop; j += 16) {
                __m512i X = _mm512_loadu_si512((const void*)(cx + j));
                __m512i Y = _mm512_loadu_si512((const void*)(cy + j));
                __m512i xi = _mm512_srai_epi32(X, 11), yi = _mm512_srai_epi32(Y, 11);
                __m512i off = _mm512_add_epi32(_mm512_mullo_epi32(yi, rowv),
                                               _mm512_add_epi32(xi, _mm512_add_epi32(xi, xi)));
                if (_mm512_cmpgt_epi32_mask(off, last)) {
                    for (int k = 0; k < 16; ++k)
                        cnnkit_warp_pixel3(image, row, cx[j + k], cy[j + k], out + 3 * (j + k));
                    continue;
                }
                __m256i lo = _mm512_castsi512_si256(off), hi = _mm512_extracti64x4_epi64(off, 1);
                __m512i t0 = _mm512_i32gather_epi64(lo, (const void*)image, 1);
                __m512i t1 = _mm512_i32gather_epi64(hi, (const void*)image, 1);
                __m512i b0 = _mm512_i32gather_epi64(lo, (const void*)(image + row), 1);
                __m512i b1 = _mm512_i32gather_epi64(hi, (const void*)(image + row), 1);
                __m512i fx = _mm512_and_si512(X, frac), fy = _mm512_and_si512(Y, frac);
                __m512i wx = _mm512_or_si512(_mm512_sub_epi32(one, fx), _mm512_slli_epi32(fx, 16));
                __m512i res[3];
                for (int c = 0; c < 3; ++c) {
                    __m512i sel = c == 0 ? pick : (c == 1 ? pick1 : pick2);
                    __m512i top = _mm512_madd_epi16(
                        _mm512_maskz_permutex2var_epi8(pairs, t0, sel, t1), wx);
                    __m512i bottom = _mm512_madd_epi16(
                        _mm512_maskz_permutex2var_epi8(pairs, b0, sel, b1), wx);
                    __m512i sum = _mm512_add_epi32(
                        _mm512_slli_epi32(top, 11),
                        _mm512_mullo_epi32(_mm512_sub_epi32(bottom, top), fy));
                    res[c] = _mm512_srli_epi32(_mm512_add_epi32(sum, round), 22);
                }
                __m512i rgb = _mm512_or_si512(
                    res[0], _mm512_or_si512(_mm512_slli_epi32(res[1], 8),
                                            _mm512_slli_epi32(res[2], 16)));
                _mm512_mask_storeu_epi8((void*)(out + 3 * j), 0xFFFFFFFFFFFFULL,
                                        _mm512_permutexvar_epi8(pack, rgb));
            }
        }
        for (; j < stop; ++j) cnnkit_warp_pixel3(image, row, cx[j], cy[j], out + 3 * j);
    }
    /* warp_affine_u8's fixed-point coordinates of a row, 8 columns at a time: the same
       float64 operations as its scalar loop (no FMA), so the same values */
    CNNKIT_WARP_AVX512 static void cnnkit_warp_coords_avx512(
            double bx, double by, double a00, double a10, ptrdiff_t n, int* cx, int* cy) {
        const __m512d vbx = _mm512_set1_pd(bx), vby = _mm512_set1_pd(by);
        const __m512d va00 = _mm512_set1_pd(a00), va10 = _mm512_set1_pd(a10);
        const __m512d scale = _mm512_set1_pd(2048.0), offset = _mm512_set1_pd(1073741824.5);
        const __m256i base = _mm256_set1_epi32(1 << 30), step = _mm256_set1_epi32(8);
        __m256i jj = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        ptrdiff_t j = 0;
        for (; j + 8 <= n; j += 8) {
            __m512d jd = _mm512_cvtepi32_pd(jj);
            __m512d x = _mm512_add_pd(
                _mm512_mul_pd(_mm512_add_pd(vbx, _mm512_mul_pd(va00, jd)), scale), offset);
            __m512d y = _mm512_add_pd(
                _mm512_mul_pd(_mm512_add_pd(vby, _mm512_mul_pd(va10, jd)), scale), offset);
            _mm256_storeu_si256((__m256i*)(cx + j), _mm256_sub_epi32(_mm512_cvttpd_epi32(x), base));
            _mm256_storeu_si256((__m256i*)(cy + j), _mm256_sub_epi32(_mm512_cvttpd_epi32(y), base));
            jj = _mm256_add_epi32(jj, step);
        }
        for (; j < n; ++j) {
            cx[j] = (int)((bx + a00 * (double)j) * 2048.0 + 1073741824.5) - (1 << 30);
            cy[j] = (int)((by + a10 * (double)j) * 2048.0 + 1073741824.5) - (1 << 30);
        }
    }
    #else
    static int cnnkit_warp_has_avx512(void) { return 0; }
    static void cnnkit_warp_coords_avx512(
            double bx, double by, double a00, double a10, ptrdiff_t n, int* cx, int* cy) {
        for (ptrdiff_t j = 0; j < n; ++j) {
            cx[j] = (int)((bx + a00 * (double)j) * 2048.0 + 1073741824.5) - (1 << 30);
            cy[j] = (int)((by + a10 * (double)j) * 2048.0 + 1073741824.5) - (1 << 30);
        }
    }
    static void cnnkit_warp_span3_avx512(
            const unsigned char* image, ptrdiff_t row, ptrdiff_t total, const int* cx,
            const int* cy, ptrdiff_t j, ptrdiff_t stop, unsigned char* out) {
        (void)total;
        for (; j < stop; ++j) cnnkit_warp_pixel3(image, row, cx[j], cy[j], out + 3 * j);
    }
    #endif
    """
    int cnnkit_warp_has_avx512() noexcept nogil
    void cnnkit_warp_coords_avx512(double bx, double by, double a00, double a10, Py_ssize_t n,
                                   int* cx, int* cy) noexcept nogil
    void cnnkit_warp_span3_avx512(const unsigned char* image, Py_ssize_t row, Py_ssize_t total,
                                  const int* cx, const int* cy, Py_ssize_t j, Py_ssize_t stop,
                                  unsigned char* out) noexcept nogil


# whether this CPU runs warp_affine_u8's AVX-512 interior span (cpuid, once)
cdef bint WARP_AVX512 = cnnkit_warp_has_avx512() != 0


def warp_vector_isa():
    """The instruction set of warp_affine_u8's 3-channel interior span: "avx512" or "scalar"."""
    return "avx512" if WARP_AVX512 else "scalar"


cdef extern from *:
    # The passes of resample_linear_fixed3, with warp_affine_u8's integer arithmetic split
    # in two: a horizontal pass per input row, ``(left << 11) + (right - left) fx`` as
    # int32 per channel plane (one 8-byte gather per pixel fetches both taps, a byte
    # permute per channel pairs them, vpmaddwd weighs them), and a vertical pass per
    # output row, ``((top << 11) + (bottom - top) fy + 2^21) >> 22``. A column clamped at
    # the window's right edge has fx = 0, so its right tap (the load's upper pixel) has
    # weight 0 whatever it holds.
    """
    static inline void cnnkit_hpass_pixel3(const unsigned char* line, int X, int* out,
                                           ptrdiff_t stride, ptrdiff_t j) {
        int fx = X & 2047, c;
        ptrdiff_t a = (ptrdiff_t)(X >> 11) * 3, b = fx ? a + 3 : a;
        for (c = 0; c < 3; ++c)
            out[c * stride + j] = (line[a + c] << 11) + (line[b + c] - line[a + c]) * fx;
    }
    static inline void cnnkit_vpass_pixel3(const int* ha, const int* hb, ptrdiff_t stride,
                                           int fy, unsigned char* out, ptrdiff_t j) {
        for (int c = 0; c < 3; ++c) {
            int t = ha[c * stride + j], u = hb[c * stride + j];
            out[3 * j + c] = (unsigned char)(((t << 11) + (u - t) * fy + (1 << 21)) >> 22);
        }
    }
    #if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
    CNNKIT_WARP_AVX512 static void cnnkit_hpass3(
            const unsigned char* line, ptrdiff_t readable, const int* cx, ptrdiff_t n,
            int* out, ptrdiff_t stride) {
        ptrdiff_t j = 0;
        if (readable < ((ptrdiff_t)1 << 31) - 64) {
            const __m512i frac = _mm512_set1_epi32(2047), one = _mm512_set1_epi32(2048);
            /* 8-byte loads end inside the image (not past its last row) */
            const __m512i last = _mm512_set1_epi32((int)(readable - 8));
            const __mmask64 pairs = 0x5555555555555555ULL;
            const __m512i lane8 = _mm512_slli_epi32(
                _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), 3);
            const __m512i pick = _mm512_or_si512(lane8, _mm512_slli_epi32(
                _mm512_add_epi32(lane8, _mm512_set1_epi32(3)), 16));
            const __m512i step = _mm512_set1_epi32(0x10001);
            for (; j + 16 <= n; j += 16) {
                __m512i X = _mm512_loadu_si512((const void*)(cx + j));
                __m512i xi = _mm512_srai_epi32(X, 11);
                __m512i off = _mm512_add_epi32(xi, _mm512_add_epi32(xi, xi));
                if (_mm512_cmpgt_epi32_mask(off, last)) {
                    for (ptrdiff_t k = j; k < j + 16; ++k)
                        cnnkit_hpass_pixel3(line, cx[k], out, stride, k);
                    continue;
                }
                __m512i g0 = _mm512_i32gather_epi64(_mm512_castsi512_si256(off),
                                                    (const void*)line, 1);
                __m512i g1 = _mm512_i32gather_epi64(_mm512_extracti64x4_epi64(off, 1),
                                                    (const void*)line, 1);
                __m512i fx = _mm512_and_si512(X, frac);
                __m512i wx = _mm512_or_si512(_mm512_sub_epi32(one, fx), _mm512_slli_epi32(fx, 16));
                __m512i sel = pick;
                for (int c = 0; c < 3; ++c) {
                    _mm512_storeu_si512((void*)(out + c * stride + j), _mm512_madd_epi16(
                        _mm512_maskz_permutex2var_epi8(pairs, g0, sel, g1), wx));
                    sel = _mm512_add_epi32(sel, step);
                }
            }
        }
        for (; j < n; ++j) cnnkit_hpass_pixel3(line, cx[j], out, stride, j);
    }
    CNNKIT_WARP_AVX512 static void cnnkit_vpass3(
            const int* ha, const int* hb, ptrdiff_t stride, int fy, ptrdiff_t n,
            unsigned char* out) {
        const __m512i round = _mm512_set1_epi32(1 << 21), fyv = _mm512_set1_epi32(fy);
        const __m512i pack = _mm512_loadu_si512((const void*)cnnkit_warp_pack3);
        ptrdiff_t j = 0;
        for (; j + 16 <= n; j += 16) {
            __m512i res[3];
            for (int c = 0; c < 3; ++c) {
                __m512i t = _mm512_loadu_si512((const void*)(ha + c * stride + j));
                __m512i u = _mm512_loadu_si512((const void*)(hb + c * stride + j));
                __m512i sum = _mm512_add_epi32(
                    _mm512_slli_epi32(t, 11), _mm512_mullo_epi32(_mm512_sub_epi32(u, t), fyv));
                res[c] = _mm512_srli_epi32(_mm512_add_epi32(sum, round), 22);
            }
            __m512i rgb = _mm512_or_si512(
                res[0], _mm512_or_si512(_mm512_slli_epi32(res[1], 8),
                                        _mm512_slli_epi32(res[2], 16)));
            _mm512_mask_storeu_epi8((void*)(out + 3 * j), 0xFFFFFFFFFFFFULL,
                                    _mm512_permutexvar_epi8(pack, rgb));
        }
        for (; j < n; ++j) cnnkit_vpass_pixel3(ha, hb, stride, fy, out, j);
    }
    #else
    static void cnnkit_hpass3(const unsigned char* line, ptrdiff_t readable, const int* cx,
                              ptrdiff_t n, int* out, ptrdiff_t stride) {
        (void)readable;
        for (ptrdiff_t j = 0; j < n; ++j) cnnkit_hpass_pixel3(line, cx[j], out, stride, j);
    }
    static void cnnkit_vpass3(const int* ha, const int* hb, ptrdiff_t stride, int fy,
                              ptrdiff_t n, unsigned char* out) {
        for (ptrdiff_t j = 0; j < n; ++j) cnnkit_vpass_pixel3(ha, hb, stride, fy, out, j);
    }
    #endif
    """
    void cnnkit_hpass3(const unsigned char* line, Py_ssize_t readable, const int* cx,
                       Py_ssize_t n, int* out, Py_ssize_t stride) noexcept nogil
    void cnnkit_vpass3(const int* ha, const int* hb, Py_ssize_t stride, int fy, Py_ssize_t n,
                       unsigned char* out) noexcept nogil


cdef inline int _fixed_position(double start, double lo, double hi, double scale,
                                Py_ssize_t k) noexcept nogil:
    """Output pixel ``k``'s bilinear position in 1/2048 input pixel for the window
    ``[start, start + length)`` (``scale = length / n_out``, ``lo`` and ``hi`` its edge
    pixels, as _window_edges): its centre less half a pixel, clamped to the window's
    edge pixels, rounded half up; the float64 operations of ``cnnkit.image._taps``."""
    cdef double pos = start + (k + 0.5) * scale - 0.5, v
    cdef int t
    pos = lo if pos < lo else pos
    pos = hi if pos > hi else pos
    v = pos * 2048.0 + 0.5
    # floor without libm's call (the baseline ISA has no rounding instruction), branch-free
    # so that the loops over k vectorise: truncation, less one where that rounded up
    t = <int>v
    return t - (1 if <double>t > v else 0)


cdef inline void _window_edges(double start, double length, Py_ssize_t n_in, double* lo,
                               double* hi) noexcept nogil:
    lo[0] = floor(start)
    hi[0] = min(ceil(start + length), <double>n_in) - 1.0


def fixed_linear_taps(const double[::1] start, const double[::1] length, Py_ssize_t n_in,
                      int[:, :, ::1] rows, int[:, ::1] cols):
    """The tables of ``resample_linear_fixed3`` for the windows ``(start[t], length[t])`` of
    an axis of ``n_in`` pixels: ``rows`` ``(T, n_out, 3)`` (first tap, second tap, weight
    of the second), or, when ``rows`` has no rows, ``cols`` ``(T, n_out)`` (positions).
    Made here rather than in NumPy (about 15 array operations a table)."""
    cdef Py_ssize_t t, k, n_out
    cdef int y, last
    cdef double lo, hi, scale
    with nogil:
        if rows.shape[0]:
            n_out = rows.shape[1]
            for t in range(rows.shape[0]):
                _window_edges(start[t], length[t], n_in, &lo, &hi)
                scale = length[t] / n_out
                last = <int>hi
                for k in range(n_out):
                    y = _fixed_position(start[t], lo, hi, scale, k)
                    rows[t, k, 0] = y >> 11
                    rows[t, k, 1] = min((y >> 11) + 1, last)
                    rows[t, k, 2] = y & 2047
        else:
            n_out = cols.shape[1]
            for t in range(cols.shape[0]):
                _window_edges(start[t], length[t], n_in, &lo, &hi)
                scale = length[t] / n_out
                for k in range(n_out):
                    cols[t, k] = _fixed_position(start[t], lo, hi, scale, k)


def resample_linear_fixed3(const unsigned char[:, :, :, ::1] src,
                           unsigned char[:, :, :, ::1] dst, const int[:, :, ::1] rows,
                           const int[:, ::1] cols, int[:, ::1] scratch, int threads):
    """Bilinear resampling of 3-channel uint8 images in fixed point (as warp_affine_u8).

    ``rows`` ``(T, out_h, 3)``: per output row the input rows of its two taps and the
    weight of the second in 1/2048; ``cols`` ``(T, out_w)``: per output column its
    position in 1/2048 input pixel (``x0 * 2048 + fx``, the taps ``x0`` and
    ``x0 + 1``, or ``fx = 0`` at a clamped edge). ``T`` is N or 1 (shared). Each
    output is the exact half-up rounding of the bilinear value at those rounded
    positions (integer arithmetic, so the split into passes changes no bit).

    Separable as :func:`resample_linear`: tasks are (image, band of ``LINEAR_BAND``
    output rows), each input row's horizontal pass is cached (two rows) in
    ``scratch`` ``(threads, fixed3_scratch_size(out_w))`` int32 (each thread's part from
    a cache-line boundary). 16 pixels at a time with AVX-512 (callers use this kernel
    only there).
    """
    cdef Py_ssize_t n_img = dst.shape[0], out_h = dst.shape[1], out_w = dst.shape[2]
    cdef Py_ssize_t h = src.shape[1], row = src.shape[2] * src.shape[3]
    cdef Py_ssize_t stride = (out_w + 15) // 16 * 16
    cdef Py_ssize_t bands = (out_h + LINEAR_BAND - 1) // LINEAR_BAND
    cdef bint shared_rows = rows.shape[0] == 1, shared_cols = cols.shape[0] == 1
    cdef Py_ssize_t task, n, i, stop, tr, tc, ra, rb, tag0, tag1
    cdef int* buf0
    cdef int* buf1
    cdef const int* cx
    if threads < 1 or scratch.shape[0] < threads or scratch.shape[1] < 7 * stride + 32:
        raise ValueError("resample_linear_fixed3(): scratch must be (threads, "
                         "fixed3_scratch_size(out_w)), threads >= 1")
    for task in prange(n_img * bands, nogil=True, num_threads=threads, schedule="static"):
        n = task // bands
        i = (task % bands) * LINEAR_BAND
        stop = i + LINEAR_BAND
        if stop > out_h:
            stop = out_h
        tr = 0 if shared_rows else n
        tc = 0 if shared_cols else n
        buf0 = _line_start(&scratch[threadid(), 0])
        buf1 = buf0 + 3 * stride
        cx = &cols[tc, 0]
        tag0 = -1
        tag1 = -1
        while i < stop:
            ra = rows[tr, i, 0]
            rb = rows[tr, i, 1]
            # keep a cached row that this output row needs; fill the other slot
            if tag0 != ra and tag1 != ra:
                if tag0 == rb:
                    cnnkit_hpass3(&src[n, ra, 0, 0], (h - ra) * row, cx, out_w, buf1, stride)
                    tag1 = ra
                else:
                    cnnkit_hpass3(&src[n, ra, 0, 0], (h - ra) * row, cx, out_w, buf0, stride)
                    tag0 = ra
            if tag0 != rb and tag1 != rb:
                if tag0 == ra:
                    cnnkit_hpass3(&src[n, rb, 0, 0], (h - rb) * row, cx, out_w, buf1, stride)
                    tag1 = rb
                else:
                    cnnkit_hpass3(&src[n, rb, 0, 0], (h - rb) * row, cx, out_w, buf0, stride)
                    tag0 = rb
            cnnkit_vpass3(buf0 if tag0 == ra else buf1, buf0 if tag0 == rb else buf1, stride,
                          rows[tr, i, 2], out_w, &dst[n, i, 0, 0])
            i = i + 1


cdef inline Py_ssize_t _first(const int* c, Py_ssize_t n, int bound, bint rising) noexcept nogil:
    """The first ``j`` in ``[0, n]`` where ``c[j] >> FRAC_BITS >= bound`` (``rising``) or
    ``< bound`` (not ``rising``), for a sequence along which that becomes true once."""
    cdef Py_ssize_t lo = 0, hi = n, mid
    while lo < hi:
        mid = (lo + hi) // 2
        if ((c[mid] >> FRAC_BITS) >= bound) == rising:
            hi = mid
        else:
            lo = mid + 1
    return lo


cdef inline void _span(const int* c, Py_ssize_t n, int lo, int hi, Py_ssize_t* start,
                       Py_ssize_t* stop) noexcept nogil:
    """The interval ``[start, stop)`` of ``j`` with ``lo <= c[j] >> FRAC_BITS <= hi``.

    A row's coordinates are rounded values of an affine function of the column, so
    monotone: two binary searches instead of a scan over the pixels outside.
    """
    if n == 0 or c[n - 1] >= c[0]:
        start[0] = _first(c, n, lo, True)
        stop[0] = _first(c, n, hi + 1, True)
    else:
        start[0] = _first(c, n, hi + 1, False)
        stop[0] = _first(c, n, lo, False)
    if stop[0] < start[0]:
        stop[0] = start[0]


cdef inline void _warp_edge_u8(const unsigned char* image, Py_ssize_t h, Py_ssize_t w,
                               Py_ssize_t chans, const int* cx, const int* cy,
                               Py_ssize_t start, Py_ssize_t stop, double bx, double by,
                               double a00, double a10, int border, double fill,
                               unsigned char fill_byte, unsigned char* out) noexcept nogil:
    """Columns ``[start, stop)`` of a row of warp_affine_u8 outside its interior span."""
    cdef Py_ssize_t j, c, x0, y0
    for j in range(start, stop):
        x0 = cx[j] >> FRAC_BITS
        y0 = cy[j] >> FRAC_BITS
        if border == BORDER_CONSTANT and (x0 < -1 or x0 >= w or y0 < -1 or y0 >= h):
            # all four taps outside
            for c in range(chans):
                out[j * chans + c] = fill_byte
        else:
            _sample(image, h, w, chans, bx + a00 * j + 0.5, by + a10 * j + 0.5,
                    INTERP_BILINEAR, border, fill, out + j * chans)


cdef enum:
    # warp_affine_u8's tasks and tiles (see there)
    WARP_BAND = 16
    WARP_TILE = 64


cdef inline Py_ssize_t _warp_part(Py_ssize_t out_w) noexcept nogil:
    """The bytes of a thread's scratch in warp_affine_u8 (int32 coordinates and spans)."""
    return 4 * WARP_BAND * (2 * out_w + 2)


def warp_scratch_size(Py_ssize_t out_w, int threads):
    """The bytes of warp_affine_u8's scratch for rows of ``out_w`` and ``threads``."""
    return thread_parts_size(_warp_part(out_w), threads)


def warp_affine_u8(const unsigned char[:, :, :, ::1] src, unsigned char[:, :, :, ::1] dst,
                   const double[:, :, ::1] inverse, int border, double fill,
                   unsigned char[::1] scratch, int threads, bint vector=True):
    """Bilinear :func:`warp_affine` of uint8 images in fixed point (see FRAC_BITS).

    Per output row: the source coordinates of all columns (a vectorisable loop,
    affine so linear in the column), then the interior span, whose four taps
    all lie inside the image (an interval: the coordinates are monotone in
    the column), without border checks; the pixels left and right of it go
    through ``_sample`` (border modes, ``fill`` unclipped as in the reference).
    ``scratch`` is ``warp_scratch_size(out_w, threads)`` bytes, each thread's part on cache
    lines of its own (``_thread_part``). 3-channel spans run 16
    pixels at a time where the CPU has AVX-512 (``warp_vector_isa()``), with the same
    bytes as the scalar loop (``vector=False``, for the tests), and in tiles: a task
    is a band of ``WARP_BAND`` output rows, whose coordinates and spans are computed
    first, then their interiors ``WARP_TILE`` pixels at a time, row after row. A
    rotated row reads a diagonal across many input rows; a tile keeps the input it
    reads within the first-level cache for the band's next rows (a row-by-row
    rotation by 30 degrees took 1.4x as long as a shear that reads along rows).
    """
    if threads < 1 or scratch.shape[0] < warp_scratch_size(dst.shape[2], threads):
        raise ValueError("warp_affine_u8(): scratch must hold warp_scratch_size(out_w, threads)")
    cdef Py_ssize_t n_img = dst.shape[0], out_h = dst.shape[1], out_w = dst.shape[2]
    cdef Py_ssize_t chans = dst.shape[3], h = src.shape[1], w = src.shape[2]
    cdef Py_ssize_t row = w * chans
    cdef bint simd = vector and WARP_AVX512
    cdef bint shared = inverse.shape[0] == 1
    cdef Py_ssize_t bands = (out_h + WARP_BAND - 1) // WARP_BAND
    cdef Py_ssize_t task, n, i, i0, i1, m, j0, j1, k0, k1, e0, e1, c, t, a, b
    cdef bint more
    cdef int* base
    cdef int* spans
    cdef int j, X, Y, fx, fy, top, bottom, wmax = <int>w - 2, hmax = <int>h - 2
    cdef double a00, a10, bx, by, x, y, v
    cdef int* cx
    cdef int* cy
    cdef const unsigned char* image
    cdef const unsigned char* p
    cdef const unsigned char* q
    cdef unsigned char* out
    cdef unsigned char* o
    cdef unsigned char fill_byte = 0
    _store(&fill_byte, fill)
    # dynamic: the bands of a batch cost more or less by how much of them falls outside
    # the image (one angle or shear per image), so a static half would be unbalanced
    for task in prange(n_img * bands, nogil=True, num_threads=threads, schedule="dynamic"):
        n = task // bands
        i0 = (task % bands) * WARP_BAND
        i1 = i0 + WARP_BAND
        if i1 > out_h:
            i1 = out_h
        base = <int*>_thread_part(&scratch[0], _warp_part(out_w), threadid())
        spans = base + WARP_BAND * 2 * out_w
        image = &src[n, 0, 0, 0]
        for i in range(i0, i1):
            m = 0 if shared else n
            a00 = inverse[m, 0, 0]
            a10 = inverse[m, 1, 0]
            v = i + 0.5
            # the point of column j is (bx + a00 j, by + a10 j), less the 0.5 of bilinear's
            # pixel centres
            bx = a00 * 0.5 + inverse[m, 0, 1] * v + inverse[m, 0, 2] - 0.5
            by = a10 * 0.5 + inverse[m, 1, 1] * v + inverse[m, 1, 2] - 0.5
            cx = base + (i - i0) * 2 * out_w
            cy = cx + out_w
            x = bx + a00 * (out_w - 1)
            y = by + a10 * (out_w - 1)
            if (-COORD_LIMIT < bx < COORD_LIMIT and -COORD_LIMIT < by < COORD_LIMIT
                    and -COORD_LIMIT < x < COORD_LIMIT and -COORD_LIMIT < y < COORD_LIMIT):
                # the usual case: the row's ends (so all its points) need no clamping, and
                # the loop is branch-free (vectorised)
                if simd:
                    cnnkit_warp_coords_avx512(bx, by, a00, a10, out_w, cx, cy)
                else:
                    for j in range(out_w):
                        cx[j] = (<int>((bx + a00 * j) * FRAC_ONE + (COORD_OFFSET + 0.5))
                                 - <int>COORD_OFFSET)
                        cy[j] = (<int>((by + a10 * j) * FRAC_ONE + (COORD_OFFSET + 0.5))
                                 - <int>COORD_OFFSET)
            else:
                for j in range(out_w):
                    x = bx + a00 * j
                    y = by + a10 * j
                    x = COORD_LIMIT if x > COORD_LIMIT else x
                    x = -COORD_LIMIT if x < -COORD_LIMIT else x
                    y = COORD_LIMIT if y > COORD_LIMIT else y
                    y = -COORD_LIMIT if y < -COORD_LIMIT else y
                    cx[j] = <int>(x * FRAC_ONE + (COORD_OFFSET + 0.5)) - <int>COORD_OFFSET
                    cy[j] = <int>(y * FRAC_ONE + (COORD_OFFSET + 0.5)) - <int>COORD_OFFSET
            # the interior span [j0, j1): all four taps inside
            _span(cx, out_w, 0, wmax, &j0, &j1)
            _span(cy, out_w, 0, hmax, &k0, &k1)
            j0 = k0 if k0 > j0 else j0
            j1 = k1 if k1 < j1 else j1
            if border == BORDER_CONSTANT:
                # [k0, k1): some tap inside; the pixels beyond are the fill value. e0 and e1
                # are assigned here, not only through their pointers, so that prange makes
                # them private to the thread (a variable written only through a pointer is
                # shared: two threads' spans mixed and put fill values inside rows)
                e0 = 0
                e1 = 0
                _span(cx, out_w, -1, wmax + 1, &k0, &k1)
                _span(cy, out_w, -1, hmax + 1, &e0, &e1)
                k0 = e0 if e0 > k0 else k0
                k1 = e1 if e1 < k1 else k1
                if k1 < k0:
                    k1 = k0
            else:
                k0 = 0
                k1 = out_w
            if j1 <= j0:
                j0 = k0
                j1 = k0
            out = &dst[n, i, 0, 0]
            spans[2 * (i - i0)] = j0
            spans[2 * (i - i0) + 1] = j1
            if chans == 3 and not simd:  # (with AVX-512: the tiles below)
                for j in range(j0, j1):
                    X = cx[j]
                    Y = cy[j]
                    fx = X & (FRAC_ONE - 1)
                    fy = Y & (FRAC_ONE - 1)
                    p = image + (Y >> FRAC_BITS) * row + (X >> FRAC_BITS) * 3
                    q = p + row
                    o = out + 3 * j
                    top = (p[0] << FRAC_BITS) + (p[3] - p[0]) * fx
                    bottom = (q[0] << FRAC_BITS) + (q[3] - q[0]) * fx
                    o[0] = <unsigned char>(((top << FRAC_BITS) + (bottom - top) * fy
                                            + FRAC_ROUND) >> (2 * FRAC_BITS))
                    top = (p[1] << FRAC_BITS) + (p[4] - p[1]) * fx
                    bottom = (q[1] << FRAC_BITS) + (q[4] - q[1]) * fx
                    o[1] = <unsigned char>(((top << FRAC_BITS) + (bottom - top) * fy
                                            + FRAC_ROUND) >> (2 * FRAC_BITS))
                    top = (p[2] << FRAC_BITS) + (p[5] - p[2]) * fx
                    bottom = (q[2] << FRAC_BITS) + (q[5] - q[2]) * fx
                    o[2] = <unsigned char>(((top << FRAC_BITS) + (bottom - top) * fy
                                            + FRAC_ROUND) >> (2 * FRAC_BITS))
            elif chans != 3:
                for j in range(j0, j1):
                    X = cx[j]
                    Y = cy[j]
                    fx = X & (FRAC_ONE - 1)
                    fy = Y & (FRAC_ONE - 1)
                    p = image + (Y >> FRAC_BITS) * row + (X >> FRAC_BITS) * chans
                    q = p + row
                    o = out + chans * j
                    for c in range(chans):
                        top = (p[c] << FRAC_BITS) + (p[c + chans] - p[c]) * fx
                        bottom = (q[c] << FRAC_BITS) + (q[c + chans] - q[c]) * fx
                        o[c] = <unsigned char>(((top << FRAC_BITS) + (bottom - top) * fy
                                                + FRAC_ROUND) >> (2 * FRAC_BITS))
            memset(out, fill_byte, k0 * chans)
            memset(out + k1 * chans, fill_byte, (out_w - k1) * chans)
            _warp_edge_u8(image, h, w, chans, cx, cy, k0, j0, bx, by, a00, a10, border, fill,
                          fill_byte, out)
            _warp_edge_u8(image, h, w, chans, cx, cy, j1, k1, bx, by, a00, a10, border, fill,
                          fill_byte, out)
        if chans == 3 and simd:
            # tile t of a row is [j0 + t WARP_TILE, ...): its 16-pixel steps are the row's
            t = 0
            more = True
            while more:
                more = False
                for i in range(i0, i1):
                    a = spans[2 * (i - i0)] + t * WARP_TILE
                    b = spans[2 * (i - i0) + 1]
                    if a < b:
                        if a + WARP_TILE < b:
                            b = a + WARP_TILE
                            more = True
                        cx = base + (i - i0) * 2 * out_w
                        cnnkit_warp_span3_avx512(image, row, h * row, cx, cx + out_w, a, b,
                                                 &dst[n, i, 0, 0])
                t = t + 1


cdef extern from *:
    # A row of 3-byte pixels mirrored 16 pixels (48 bytes) at a time with AVX-512 VBMI: a
    # masked load (nothing read outside the row), one byte permute, a masked store;
    # the pixels left over (w % 16) are copied one by one. Returns 0 without AVX-512.
    """
    #if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
    static const unsigned char cnnkit_flip_rev3[64] = {
        45, 46, 47, 42, 43, 44, 39, 40, 41, 36, 37, 38, 33, 34, 35, 30, 31, 32, 27, 28, 29,
        24, 25, 26, 21, 22, 23, 18, 19, 20, 15, 16, 17, 12, 13, 14, 9, 10, 11, 6, 7, 8, 3,
        4, 5, 0, 1, 2};
    CNNKIT_WARP_AVX512 static int cnnkit_flip_row3_avx512(
            const unsigned char* s, unsigned char* d, ptrdiff_t w) {
        const __m512i rev = _mm512_loadu_si512((const void*)cnnkit_flip_rev3);
        const __mmask64 bytes48 = 0xFFFFFFFFFFFFULL;
        ptrdiff_t j = 0;
        for (; j + 16 <= w; j += 16) {
            __m512i v = _mm512_maskz_loadu_epi8(bytes48, (const void*)(s + 3 * (w - j - 16)));
            _mm512_mask_storeu_epi8((void*)(d + 3 * j), bytes48, _mm512_permutexvar_epi8(rev, v));
        }
        for (; j < w; ++j) {
            d[3 * j] = s[3 * (w - 1 - j)];
            d[3 * j + 1] = s[3 * (w - 1 - j) + 1];
            d[3 * j + 2] = s[3 * (w - 1 - j) + 2];
        }
        return 1;
    }
    #else
    static int cnnkit_flip_row3_avx512(const unsigned char* s, unsigned char* d, ptrdiff_t w) {
        (void)s; (void)d; (void)w;
        return 0;
    }
    #endif
    """
    int cnnkit_flip_row3_avx512(const unsigned char* s, unsigned char* d,
                                Py_ssize_t w) noexcept nogil


cdef inline void _flip_row(const pixel* s, pixel* d, Py_ssize_t w, Py_ssize_t chans,
                           bint horizontal) noexcept nogil:
    """One row of :func:`flip`: ``s`` mirrored left-right into ``d``, or copied."""
    cdef Py_ssize_t j, c
    cdef unsigned int word
    if not horizontal:
        memcpy(d, s, w * chans * sizeof(pixel))
    elif pixel is not float and chans == 3 and WARP_AVX512:
        cnnkit_flip_row3_avx512(s, d, w)
    elif pixel is not float and chans == 3 and w > 2:
        # 3-byte pixels moved as 4-byte words, each store's fourth byte overwritten
        # by the next pixel's; the two end pixels go byte by byte so that no load
        # or store leaves the row (another thread writes the next row)
        d[0] = s[3 * (w - 1)]
        d[1] = s[3 * (w - 1) + 1]
        d[2] = s[3 * (w - 1) + 2]
        for j in range(1, w - 1):
            memcpy(&word, s + 3 * (w - 1 - j), 4)
            memcpy(d + 3 * j, &word, 4)
        d[3 * (w - 1)] = s[0]
        d[3 * (w - 1) + 1] = s[1]
        d[3 * (w - 1) + 2] = s[2]
    elif chans == 3:
        for j in range(w):
            d[3 * j] = s[3 * (w - 1 - j)]
            d[3 * j + 1] = s[3 * (w - 1 - j) + 1]
            d[3 * j + 2] = s[3 * (w - 1 - j) + 2]
    elif chans == 1:
        for j in range(w):
            d[j] = s[w - 1 - j]
    else:
        for j in range(w):
            for c in range(chans):
                d[j * chans + c] = s[(w - 1 - j) * chans + c]


def flip(const pixel[:, :, :, ::1] src, pixel[:, :, :, ::1] dst, bint horizontal, bint vertical,
         int threads):
    """``dst`` is ``src`` mirrored left-right and/or upside down."""
    cdef Py_ssize_t n_img = dst.shape[0], h = dst.shape[1], w = dst.shape[2]
    cdef Py_ssize_t chans = dst.shape[3]
    cdef Py_ssize_t task, n, i, si
    for task in prange(n_img * h, nogil=True, num_threads=threads, schedule="static"):
        n = task // h
        i = task % h
        si = h - 1 - i if vertical else i
        _flip_row(&src[n, si, 0, 0], &dst[n, i, 0, 0], w, chans, horizontal)


def flip_selected(const pixel[:, :, :, ::1] src, pixel[:, :, :, ::1] dst,
                  const unsigned char[::1] selected, bint horizontal, bint vertical,
                  int threads):
    """``dst`` is ``src`` with the images ``n`` where ``selected[n]`` mirrored as by
    :func:`flip` and the others copied: one pass over the batch for a flip with
    ``p < 1`` (not a gather, a flip and a scatter)."""
    cdef Py_ssize_t n_img = dst.shape[0], h = dst.shape[1], w = dst.shape[2]
    cdef Py_ssize_t chans = dst.shape[3]
    cdef Py_ssize_t task, n, i, si
    for task in prange(n_img * h, nogil=True, num_threads=threads, schedule="static"):
        n = task // h
        i = task % h
        if selected[n]:
            si = h - 1 - i if vertical else i
            _flip_row(&src[n, si, 0, 0], &dst[n, i, 0, 0], w, chans, horizontal)
        else:
            memcpy(&dst[n, i, 0, 0], &src[n, i, 0, 0], w * chans * sizeof(pixel))


cdef extern from *:
    # The tap loop of the separable Gaussian blur (gaussian_blur, elastic_fields): output
    # value j of a pass is taps[h] x[rows[h]][j] + sum over t < h of
    # taps[t] (x[rows[t]][j] + x[rows[k-1-t]][j]) (the kernel is symmetric: half the
    # products), with x[r] = base + r * stride; the row pass gives a padded row and
    # rows[t] = t, the column pass the rows of the border. The AVX-512 loop keeps 64
    # outputs in registers across the taps and is picked at run time; it does the same
    # float32 operations per value in the same order as the plain loop (no FMA), so the
    # bits do not depend on the path. sigma 50 (albumentations' default) has 401 taps.
    """
    #include <stddef.h>
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
    #define CNNKIT_BLUR_CLONES __attribute__((target_clones("avx2", "default")))
    #else
    #define CNNKIT_BLUR_CLONES
    #endif
    CNNKIT_BLUR_CLONES static void cnnkit_blur_rows_plain(
            const float* base, ptrdiff_t stride, const int* rows, const float* taps, int k,
            float* __restrict out, ptrdiff_t w) {
        int half = k / 2;
        const float* mid = base + rows[half] * stride;
        for (ptrdiff_t j = 0; j < w; ++j) out[j] = taps[half] * mid[j];
        for (int t = 0; t < half; ++t) {
            const float* a = base + rows[t] * stride;
            const float* b = base + rows[k - 1 - t] * stride;
            float tap = taps[t];
            for (ptrdiff_t j = 0; j < w; ++j) out[j] = out[j] + tap * (a[j] + b[j]);
        }
    }
    #if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
    #include <immintrin.h>
    __attribute__((target("avx512f"))) static void cnnkit_blur_rows_avx512(
            const float* base, ptrdiff_t stride, const int* rows, const float* taps, int k,
            float* out, ptrdiff_t w) {
        int half = k / 2;
        ptrdiff_t j = 0;
        for (; j + 64 <= w; j += 64) {
            const float* m = base + rows[half] * stride + j;
            __m512 c = _mm512_set1_ps(taps[half]);
            __m512 s0 = _mm512_mul_ps(c, _mm512_loadu_ps(m));
            __m512 s1 = _mm512_mul_ps(c, _mm512_loadu_ps(m + 16));
            __m512 s2 = _mm512_mul_ps(c, _mm512_loadu_ps(m + 32));
            __m512 s3 = _mm512_mul_ps(c, _mm512_loadu_ps(m + 48));
            for (int t = 0; t < half; ++t) {
                const float* a = base + rows[t] * stride + j;
                const float* b = base + rows[k - 1 - t] * stride + j;
                __m512 tap = _mm512_set1_ps(taps[t]);
                s0 = _mm512_add_ps(s0, _mm512_mul_ps(tap, _mm512_add_ps(_mm512_loadu_ps(a),
                                                                       _mm512_loadu_ps(b))));
                s1 = _mm512_add_ps(s1, _mm512_mul_ps(tap, _mm512_add_ps(
                    _mm512_loadu_ps(a + 16), _mm512_loadu_ps(b + 16))));
                s2 = _mm512_add_ps(s2, _mm512_mul_ps(tap, _mm512_add_ps(
                    _mm512_loadu_ps(a + 32), _mm512_loadu_ps(b + 32))));
                s3 = _mm512_add_ps(s3, _mm512_mul_ps(tap, _mm512_add_ps(
                    _mm512_loadu_ps(a + 48), _mm512_loadu_ps(b + 48))));
            }
            _mm512_storeu_ps(out + j, s0);
            _mm512_storeu_ps(out + j + 16, s1);
            _mm512_storeu_ps(out + j + 32, s2);
            _mm512_storeu_ps(out + j + 48, s3);
        }
        for (; j < w; j += 16) {
            __mmask16 mask = (w - j >= 16) ? (__mmask16)0xFFFF
                                            : (__mmask16)((1u << (unsigned)(w - j)) - 1u);
            __m512 s = _mm512_mul_ps(_mm512_set1_ps(taps[half]),
                                     _mm512_maskz_loadu_ps(mask, base + rows[half] * stride + j));
            for (int t = 0; t < half; ++t) {
                __m512 a = _mm512_maskz_loadu_ps(mask, base + rows[t] * stride + j);
                __m512 b = _mm512_maskz_loadu_ps(mask, base + rows[k - 1 - t] * stride + j);
                s = _mm512_add_ps(s, _mm512_mul_ps(_mm512_set1_ps(taps[t]), _mm512_add_ps(a, b)));
            }
            _mm512_mask_storeu_ps(out + j, mask, s);
        }
    }
    static int cnnkit_blur_avx512 = -1;
    static void cnnkit_blur_rows(const float* base, ptrdiff_t stride, const int* rows,
                                 const float* taps, int k, float* out, ptrdiff_t w) {
        if (cnnkit_blur_avx512 < 0) {  /* a benign race: every thread stores the same value */
            __builtin_cpu_init();
            cnnkit_blur_avx512 = __builtin_cpu_supports("avx512f") ? 1 : 0;
        }
        if (cnnkit_blur_avx512)
            cnnkit_blur_rows_avx512(base, stride, rows, taps, k, out, w);
        else
            cnnkit_blur_rows_plain(base, stride, rows, taps, k, out, w);
    }
    /* The column pass of a whole field: output row i of dst takes rows rows[i .. i+k-1]
       of src (w floats each). 32 columns at a time (a strip of a 256-row field stays in
       the first-level cache) and four output rows at once: eight independent sums, so
       the additions' latency does not bound the loop (two loads per multiply do). */
    __attribute__((target("avx512f"))) static void cnnkit_blur_columns_avx512(
            const float* src, float* dst, ptrdiff_t n_rows, ptrdiff_t w, const int* rows,
            const float* taps, int k) {
        int half = k / 2;
        for (ptrdiff_t j = 0; j < w; j += 32) {
            ptrdiff_t left = w - j;
            __mmask16 m0 = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
            __mmask16 m1 = left >= 32 ? (__mmask16)0xFFFF
                           : left > 16 ? (__mmask16)((1u << (left - 16)) - 1u) : (__mmask16)0;
            const float* s = src + j;
            ptrdiff_t i = 0;
            for (; i + 4 <= n_rows; i += 4) {
                __m512 c = _mm512_set1_ps(taps[half]);
                const float* r0 = s + rows[i + half] * w;
                const float* r1 = s + rows[i + 1 + half] * w;
                const float* r2 = s + rows[i + 2 + half] * w;
                const float* r3 = s + rows[i + 3 + half] * w;
                __m512 a0 = _mm512_mul_ps(c, _mm512_maskz_loadu_ps(m0, r0));
                __m512 b0 = _mm512_mul_ps(c, _mm512_maskz_loadu_ps(m1, r0 + 16));
                __m512 a1 = _mm512_mul_ps(c, _mm512_maskz_loadu_ps(m0, r1));
                __m512 b1 = _mm512_mul_ps(c, _mm512_maskz_loadu_ps(m1, r1 + 16));
                __m512 a2 = _mm512_mul_ps(c, _mm512_maskz_loadu_ps(m0, r2));
                __m512 b2 = _mm512_mul_ps(c, _mm512_maskz_loadu_ps(m1, r2 + 16));
                __m512 a3 = _mm512_mul_ps(c, _mm512_maskz_loadu_ps(m0, r3));
                __m512 b3 = _mm512_mul_ps(c, _mm512_maskz_loadu_ps(m1, r3 + 16));
                for (int t = 0; t < half; ++t) {
                    __m512 tap = _mm512_set1_ps(taps[t]);
                    const int* lo = rows + i + t;
                    const int* hi = rows + i + k - 1 - t;
    #define CNNKIT_BLUR_STEP(acc, r, off, m) \
                    acc = _mm512_add_ps(acc, _mm512_mul_ps(tap, _mm512_add_ps( \
                        _mm512_maskz_loadu_ps(m, s + lo[r] * w + off), \
                        _mm512_maskz_loadu_ps(m, s + hi[r] * w + off))))
                    CNNKIT_BLUR_STEP(a0, 0, 0, m0);
                    CNNKIT_BLUR_STEP(b0, 0, 16, m1);
                    CNNKIT_BLUR_STEP(a1, 1, 0, m0);
                    CNNKIT_BLUR_STEP(b1, 1, 16, m1);
                    CNNKIT_BLUR_STEP(a2, 2, 0, m0);
                    CNNKIT_BLUR_STEP(b2, 2, 16, m1);
                    CNNKIT_BLUR_STEP(a3, 3, 0, m0);
                    CNNKIT_BLUR_STEP(b3, 3, 16, m1);
                }
                float* d = dst + i * w + j;
                _mm512_mask_storeu_ps(d, m0, a0);
                _mm512_mask_storeu_ps(d + 16, m1, b0);
                _mm512_mask_storeu_ps(d + w, m0, a1);
                _mm512_mask_storeu_ps(d + w + 16, m1, b1);
                _mm512_mask_storeu_ps(d + 2 * w, m0, a2);
                _mm512_mask_storeu_ps(d + 2 * w + 16, m1, b2);
                _mm512_mask_storeu_ps(d + 3 * w, m0, a3);
                _mm512_mask_storeu_ps(d + 3 * w + 16, m1, b3);
            }
            for (; i < n_rows; ++i) {
                __m512 c = _mm512_set1_ps(taps[half]);
                const float* r0 = s + rows[i + half] * w;
                __m512 a0 = _mm512_mul_ps(c, _mm512_maskz_loadu_ps(m0, r0));
                __m512 b0 = _mm512_mul_ps(c, _mm512_maskz_loadu_ps(m1, r0 + 16));
                for (int t = 0; t < half; ++t) {
                    __m512 tap = _mm512_set1_ps(taps[t]);
                    const int* lo = rows + i + t;
                    const int* hi = rows + i + k - 1 - t;
                    CNNKIT_BLUR_STEP(a0, 0, 0, m0);
                    CNNKIT_BLUR_STEP(b0, 0, 16, m1);
                }
    #undef CNNKIT_BLUR_STEP
                _mm512_mask_storeu_ps(dst + i * w + j, m0, a0);
                _mm512_mask_storeu_ps(dst + i * w + j + 16, m1, b0);
            }
        }
    }
    static void cnnkit_blur_columns(const float* src, float* dst, ptrdiff_t n_rows, ptrdiff_t w,
                                    const int* rows, const float* taps, int k) {
        if (cnnkit_blur_avx512 < 0) {
            __builtin_cpu_init();
            cnnkit_blur_avx512 = __builtin_cpu_supports("avx512f") ? 1 : 0;
        }
        if (cnnkit_blur_avx512) {
            cnnkit_blur_columns_avx512(src, dst, n_rows, w, rows, taps, k);
        } else {
            for (ptrdiff_t i = 0; i < n_rows; ++i)
                cnnkit_blur_rows_plain(src, w, rows + i, taps, k, dst + i * w, w);
        }
    }
    #else
    static void cnnkit_blur_rows(const float* base, ptrdiff_t stride, const int* rows,
                                 const float* taps, int k, float* out, ptrdiff_t w) {
        cnnkit_blur_rows_plain(base, stride, rows, taps, k, out, w);
    }
    static void cnnkit_blur_columns(const float* src, float* dst, ptrdiff_t n_rows, ptrdiff_t w,
                                    const int* rows, const float* taps, int k) {
        for (ptrdiff_t i = 0; i < n_rows; ++i)
            cnnkit_blur_rows_plain(src, w, rows + i, taps, k, dst + i * w, w);
    }
    #endif
    /* dst (w x h) = the transpose of src (h x w), in 8 x 8 blocks */
    static void cnnkit_transpose(const float* src, float* dst, ptrdiff_t h, ptrdiff_t w) {
        for (ptrdiff_t i0 = 0; i0 < h; i0 += 8)
            for (ptrdiff_t j0 = 0; j0 < w; j0 += 8) {
                ptrdiff_t i1 = i0 + 8 < h ? i0 + 8 : h, j1 = j0 + 8 < w ? j0 + 8 : w;
                for (ptrdiff_t i = i0; i < i1; ++i)
                    for (ptrdiff_t j = j0; j < j1; ++j) dst[j * h + i] = src[i * w + j];
            }
    }
    """
    void cnnkit_blur_rows(const float* base, Py_ssize_t stride, const int* rows,
                          const float* taps, int k, float* out, Py_ssize_t w) noexcept nogil
    void cnnkit_blur_columns(const float* src, float* dst, Py_ssize_t n_rows, Py_ssize_t w,
                             const int* rows, const float* taps, int k) noexcept nogil
    void cnnkit_transpose(const float* src, float* dst, Py_ssize_t h, Py_ssize_t w) noexcept nogil


cdef inline void _blur_field(float* field, float* out, Py_ssize_t h, Py_ssize_t w,
                             const float* taps, int k, float* work, int* index) noexcept nogil:
    """Blur one ``h x w`` field (reflect border) into ``out``: the row pass as a column
    pass of the transposed field (``work``, ``2 h w`` floats; the column loop reads
    whole aligned rows, the row loop's shifted loads split cache lines), transposed
    back into ``field``, then the column pass. ``index`` holds ``w + h + 2 k`` ints:
    the reflected columns and rows, looked up once per field (``_border`` divides)."""
    cdef Py_ssize_t i, j, half = k // 2
    cdef int* cols = index
    cdef int* rows = index + w + k
    for j in range(w + k - 1):
        cols[j] = <int>_border(j - half, w, BORDER_REFLECT)
    for i in range(h + k - 1):
        rows[i] = <int>_border(i - half, h, BORDER_REFLECT)
    cnnkit_transpose(field, work, h, w)
    cnnkit_blur_columns(work, work + h * w, w, h, cols, taps, k)
    cnnkit_transpose(work + h * w, field, w, h)
    cnnkit_blur_columns(field, out, h, w, rows, taps, k)


def gaussian_blur(const float[:, :, ::1] src, float[:, :, ::1] dst, float[:, ::1] scratch,
                  int[:, ::1] rows, const float[::1] taps, int threads):
    """Separable blur of ``(N, H, W)`` fields with the odd, symmetric ``taps``, reflect border.

    One field per task (its passes stay in the thread's cache); ``scratch`` is
    ``(threads, 3 H W)`` floats, ``rows`` ``(threads, W + H + 2 len(taps))``.
    """
    cdef Py_ssize_t n_img = src.shape[0], h = src.shape[1], w = src.shape[2]
    cdef int k = taps.shape[0]
    cdef Py_ssize_t n, tid
    cdef float* field
    if n_img * h * w == 0:
        return
    for n in prange(n_img, nogil=True, num_threads=threads, schedule="dynamic"):
        tid = threadid()
        field = &scratch[tid, 0]
        memcpy(field, &src[n, 0, 0], h * w * sizeof(float))
        _blur_field(field, &dst[n, 0, 0], h, w, &taps[0], k, field + h * w, &rows[tid, 0])


def lut(const unsigned char[:, :, :, ::1] src, unsigned char[:, :, :, ::1] dst,
        const unsigned char[:, :, ::1] table, int threads):
    """``dst[n, i, j, c] = table[n, c, src[n, i, j, c]]``: any per-channel map of uint8 images."""
    cdef Py_ssize_t n_img = dst.shape[0], h = dst.shape[1], w = dst.shape[2]
    cdef Py_ssize_t chans = dst.shape[3]
    cdef Py_ssize_t task, n, i, j, c
    cdef const unsigned char* s
    cdef unsigned char* d
    cdef const unsigned char* t0
    cdef const unsigned char* t1
    cdef const unsigned char* t2
    for task in prange(n_img * h, nogil=True, num_threads=threads, schedule="static"):
        n = task // h
        i = task % h
        s = &src[n, i, 0, 0]
        d = &dst[n, i, 0, 0]
        if chans == 3:
            t0 = &table[n, 0, 0]
            t1 = &table[n, 1, 0]
            t2 = &table[n, 2, 0]
            for j in range(w):
                d[3 * j] = t0[s[3 * j]]
                d[3 * j + 1] = t1[s[3 * j + 1]]
                d[3 * j + 2] = t2[s[3 * j + 2]]
        else:
            for j in range(w):
                for c in range(chans):
                    d[j * chans + c] = table[n, c, s[j * chans + c]]


cdef inline void _colour_table(double a, double b, unsigned char* out) noexcept nogil:
    """``out[x]`` = ``x * a + b`` clipped to [0, 255] and rounded half up, in float64 (the
    reference's arithmetic)."""
    cdef Py_ssize_t x
    cdef double value
    for x in range(256):
        value = x * a + b
        value = min(max(value, 0.0), 255.0)
        out[x] = <unsigned char>(value + 0.5)


def colour_tables_u8(const double[:, ::1] scale, const double[:, ::1] offset,
                     unsigned char[:, :, ::1] table, int[:, ::1] a, int[:, ::1] b,
                     unsigned char[::1] exact, int shift):
    """The tables of ``x * scale + offset`` for uint8 (``floor(clip(., 0, 255) + 0.5)`` in
    float64, as the reference) and integer coefficients for ``affine_u8``.

    ``a`` is ``scale * 2**shift`` rounded or one off, ``b`` any value in the
    interval that every input ``x`` allows: ``floor((x a + b) / 2**shift)``
    must be ``table[x]`` (``<= 0`` where that is 0, ``>= 255`` where 255). The
    constraints are that equality, so a non-empty interval for every channel
    makes ``exact[n]`` and ``affine_u8`` equal to the table lookup for all 256
    inputs. ``shift`` keeps ``|x a + b| < 2**31`` (the caller bounds it).
    """
    cdef Py_ssize_t n_img = table.shape[0], chans = table.shape[1], n, c, x, k
    cdef long long unit = 1LL << shift, big = 1LL << 40, a0, ak, b0, lo, hi, xa, t
    cdef bint found
    for n in range(n_img):
        exact[n] = 1
        for c in range(chans):
            _colour_table(scale[n, c], offset[n, c], &table[n, c, 0])
            if shift < 8:  # coefficients too large for int32 with a useful precision
                exact[n] = 0
                continue
            a0 = <long long>nearbyint(scale[n, c] * unit)
            b0 = <long long>nearbyint((offset[n, c] + 0.5) * unit)
            found = False
            for k in range(3):
                ak = a0 + (0, -1, 1)[k]
                lo = -big
                hi = big
                for x in range(256):
                    t = table[n, c, x]
                    xa = x * ak
                    if t > 0:
                        lo = max(lo, t * unit - xa)
                    if t < 255:
                        hi = min(hi, (t + 1) * unit - 1 - xa)
                if lo <= hi:
                    a[n, c] = <int>ak
                    b[n, c] = <int>min(max(b0, lo), hi)
                    found = True
                    break
            if not found:
                exact[n] = 0


cdef inline void _affine_row(const unsigned char* s, unsigned char* d, const int* a,
                             const int* b, Py_ssize_t n, int shift) noexcept nogil:
    cdef Py_ssize_t j
    cdef int v, zero = 0, top = 255
    for j in range(n):
        v = (<int>s[j] * a[j] + b[j]) >> shift
        d[j] = <unsigned char>min(max(v, zero), top)


def affine_u8(const unsigned char[:, :, :, ::1] src, unsigned char[:, :, :, ::1] dst,
              const int[:, ::1] scale, const int[:, ::1] offset, const unsigned char[::1] exact,
              const unsigned char[:, :, ::1] table, int shift, int threads):
    """``dst = clamp((src * scale + offset) >> shift, 0, 255)`` in int32 for the images with
    ``exact[n]``, ``lut`` with ``table[n]`` for the others.

    The caller fits the integer coefficients (rows ``(N, W C)``, per-channel
    values repeated along the row, as ``colour_affine``) to each image's table
    and checks all 256 inputs, so this equals the table lookup; unlike the
    byte-by-byte lookup, the compiler vectorises this loop.
    """
    cdef Py_ssize_t n_img = dst.shape[0], h = dst.shape[1], w = dst.shape[2]
    cdef Py_ssize_t chans = dst.shape[3], row = w * chans
    cdef Py_ssize_t task, n, i, j
    cdef const unsigned char* s
    cdef unsigned char* d
    cdef const unsigned char* t
    for task in prange(n_img * h, nogil=True, num_threads=threads, schedule="static"):
        n = task // h
        i = task % h
        s = &src[n, i, 0, 0]
        d = &dst[n, i, 0, 0]
        if exact[n]:
            _affine_row(s, d, &scale[n, 0], &offset[n, 0], row, shift)
        else:
            for j in range(row):
                t = &table[n, j % chans, 0]
                d[j] = t[s[j]]


def colour_affine(const float[:, :, :, ::1] src, float[:, :, :, ::1] dst,
                  const float[:, ::1] scale, const float[:, ::1] offset, int threads):
    """``dst[n, i, j, c] = src[n, i, j, c] * scale[n', j C + c] + offset[n', j C + c]`` for
    float32 images (uint8 images take ``affine_u8``, exact to the float64 tables).

    The coefficients are rows ``(N or 1, W C)``, the per-channel values repeated
    along the row, so that the loop is one contiguous multiply-add that the
    compiler vectorises. Brightness/contrast, RGB shift and PCA colour all are
    this map with different per-image, per-channel coefficients.
    """
    cdef Py_ssize_t n_img = dst.shape[0], h = dst.shape[1]
    cdef Py_ssize_t row = dst.shape[2] * dst.shape[3]
    cdef bint shared = scale.shape[0] == 1
    cdef Py_ssize_t task, n, i, k, m
    cdef const float* s
    cdef const float* a
    cdef const float* b
    cdef float* d
    for task in prange(n_img * h, nogil=True, num_threads=threads, schedule="static"):
        n = task // h
        i = task % h
        m = 0 if shared else n
        s = &src[n, i, 0, 0]
        d = &dst[n, i, 0, 0]
        a = &scale[m, 0]
        b = &offset[m, 0]
        for k in range(row):
            d[k] = s[k] * a[k] + b[k]


cdef extern from *:
    # Per-channel 256-entry tables of uint8 images with AVX-512 VBMI (Ice Lake and
    # later): vpermi2b looks up 64 bytes at a time in half a table (128 bytes), the
    # index's top bit picks the half. Interleaved RGB rows use a table per channel:
    # each 64-byte vector is looked up in all three and blended by the channel
    # pattern of its place in a 192-byte (64-pixel) block. Exact by construction
    # (a lookup), unlike the integer affine, and several times faster than it.
    """
    #include <stddef.h>
    #include <stdint.h>
    #include <string.h>
    #if defined(__GNUC__) && defined(__x86_64__)
    #include <immintrin.h>
    #define CNNKIT_HAVE_VBMI_LUT 1
    #define CNNKIT_VBMI __attribute__((target("avx512f,avx512bw,avx512vbmi")))
    static int cnnkit_vbmi_supported(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
               && __builtin_cpu_supports("avx512vbmi");
    }
    CNNKIT_VBMI static inline __m512i cnnkit_lookup64(__m512i idx, const __m512i* t) {
        __m512i low = _mm512_permutex2var_epi8(t[0], idx, t[1]);
        __m512i high = _mm512_permutex2var_epi8(t[2], idx, t[3]);
        return _mm512_mask_blend_epi8(_mm512_movepi8_mask(idx), low, high);
    }
    /* d[k] = table[(k % chans) * 256 + s[k]] for k < n, chans 1 (one table) or 3;
       s starts on a pixel. */
    CNNKIT_VBMI static void cnnkit_lut_vbmi(const uint8_t* s, uint8_t* d, ptrdiff_t n,
                                            const uint8_t* table, int chans) {
        __m512i t[3][4];
        __mmask64 place[3][3];
        ptrdiff_t k = 0;
        for (int c = 0; c < chans; ++c)
            for (int q = 0; q < 4; ++q) t[c][q] = _mm512_loadu_si512(table + 256 * c + 64 * q);
        if (chans == 1) {
            for (; k + 64 <= n; k += 64)
                _mm512_storeu_si512(d + k, cnnkit_lookup64(_mm512_loadu_si512(s + k), t[0]));
            for (; k < n; ++k) d[k] = table[s[k]];
            return;
        }
        for (int v = 0; v < 3; ++v)
            for (int c = 0; c < 3; ++c) {
                uint64_t bits = 0;
                for (int b = 0; b < 64; ++b)
                    if ((64 * v + b) % 3 == c) bits |= 1ULL << b;
                place[v][c] = (__mmask64)bits;
            }
        for (; k + 192 <= n; k += 192)
            for (int v = 0; v < 3; ++v) {
                __m512i idx = _mm512_loadu_si512(s + k + 64 * v);
                __m512i out = cnnkit_lookup64(idx, t[0]);
                out = _mm512_mask_blend_epi8(place[v][1], out, cnnkit_lookup64(idx, t[1]));
                out = _mm512_mask_blend_epi8(place[v][2], out, cnnkit_lookup64(idx, t[2]));
                _mm512_storeu_si512(d + k + 64 * v, out);
            }
        for (; k < n; ++k) d[k] = table[(k % 3) * 256 + s[k]];
    }
    /* RGB tables that all are saturating shifts, t_c[x] = clamp(x + shift[c], 0, 255):
       an unsigned saturating add and subtract per 64 bytes (RGB shifts and PCA colour
       of uint8 images are such tables) */
    CNNKIT_VBMI static void cnnkit_shift3_avx512(const uint8_t* s, uint8_t* d, ptrdiff_t n,
                                                 const int* shift) {
        uint8_t up[192], down[192];
        __m512i add[3], sub[3];
        ptrdiff_t k = 0;
        for (int b = 0; b < 192; ++b) {
            int v = shift[b % 3];
            up[b] = (uint8_t)(v > 0 ? v : 0);
            down[b] = (uint8_t)(v < 0 ? -v : 0);
        }
        for (int v = 0; v < 3; ++v) {
            add[v] = _mm512_loadu_si512(up + 64 * v);
            sub[v] = _mm512_loadu_si512(down + 64 * v);
        }
        for (; k + 192 <= n; k += 192)
            for (int v = 0; v < 3; ++v) {
                __m512i x = _mm512_loadu_si512(s + k + 64 * v);
                x = _mm512_subs_epu8(_mm512_adds_epu8(x, add[v]), sub[v]);
                _mm512_storeu_si512(d + k + 64 * v, x);
            }
        for (; k < n; ++k) {
            int v = (int)s[k] + shift[k % 3];
            d[k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    #else
    #define CNNKIT_HAVE_VBMI_LUT 0
    static int cnnkit_vbmi_supported(void) { return 0; }
    static void cnnkit_lut_vbmi(const uint8_t* s, uint8_t* d, ptrdiff_t n,
                                const uint8_t* table, int chans) {
        for (ptrdiff_t k = 0; k < n; ++k) d[k] = table[(k % chans) * 256 + s[k]];
    }
    static void cnnkit_shift3_avx512(const uint8_t* s, uint8_t* d, ptrdiff_t n,
                                     const int* shift) {
        for (ptrdiff_t k = 0; k < n; ++k) {
            int v = (int)s[k] + shift[k % 3];
            d[k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    #endif
    /* the shift k with t[x] == clamp(x + k, 0, 255) for all x, or CNNKIT_NO_SHIFT */
    #define CNNKIT_NO_SHIFT 1000
    static int cnnkit_table_shift(const uint8_t* t) {
        int k = t[0] == 255 ? 255 : -255;  /* a constant table: any shift that saturates */
        for (int x = 0; x < 256; ++x)
            if (t[x] != 0 && t[x] != 255) {
                k = (int)t[x] - x;
                break;
            }
        for (int x = 0; x < 256; ++x) {
            int v = x + k;
            if (t[x] != (v < 0 ? 0 : v > 255 ? 255 : v)) return CNNKIT_NO_SHIFT;
        }
        return k;
    }
    """
    int cnnkit_vbmi_supported() noexcept nogil
    void cnnkit_lut_vbmi(const unsigned char* s, unsigned char* d, Py_ssize_t n,
                         const unsigned char* table, int chans) noexcept nogil
    void cnnkit_shift3_avx512(const unsigned char* s, unsigned char* d, Py_ssize_t n,
                              const int* shift) noexcept nogil
    int cnnkit_table_shift(const unsigned char* t) noexcept nogil
    int CNNKIT_NO_SHIFT


def has_vbmi_lut():
    """Whether this CPU (and OS) runs ``lut_vbmi``'s AVX-512 VBMI loop."""
    return bool(cnnkit_vbmi_supported())


cdef enum:
    # bytes per task of lut_vbmi: a multiple of 192 (64 RGB pixels), so that each
    # task starts on the channel pattern's first place; 16 tasks per 256 x 256 RGB image
    LUT_CHUNK = 192 * 64


cdef inline Py_ssize_t _lines(Py_ssize_t size) noexcept nogil:
    return (size + 63) // 64 * 64


def thread_parts_size(Py_ssize_t part, int threads):
    """Bytes of a kernel's scratch of ``threads`` parts of ``part`` bytes, each part on
    cache lines of its own (``_thread_part``), from an unaligned buffer: what
    ``image.thread_scratch`` makes, without its Python (several us when the caches
    are full of pixels)."""
    return threads * _lines(part) + 64


cdef inline unsigned char* _thread_part(unsigned char* scratch, Py_ssize_t part,
                                        Py_ssize_t tid) noexcept nogil:
    return scratch + (64 - <size_t>scratch % 64) % 64 + tid * _lines(part)


cdef inline Py_ssize_t _lut_part(Py_ssize_t chans) noexcept nogil:
    """A thread's part of lut_vbmi's scratch: its tables, then its ``C + 1`` shifts (read
    on every task: sharing a line with the other thread's, which it writes at each
    image, would pass the line back and forth)."""
    return 256 * chans + 4 * (chans + 1)


def lut_scratch_size(Py_ssize_t chans, int threads):
    """Bytes of ``lut_vbmi``'s and ``colour_affine_lut``'s scratch for ``threads``."""
    return thread_parts_size(_lut_part(chans), threads)


cdef inline unsigned char* _lut_thread_part(unsigned char* scratch, Py_ssize_t chans,
                                            Py_ssize_t tid) noexcept nogil:
    return _thread_part(scratch, _lut_part(chans), tid)


cdef inline void _lut_span(const unsigned char* s, unsigned char* d, Py_ssize_t lo,
                           Py_ssize_t hi, Py_ssize_t n, Py_ssize_t chans, const double* scale,
                           const double* offset, unsigned char* t) noexcept nogil:
    """Bytes ``[lo, hi)`` of image ``n`` (``s``, ``d`` its first byte) by its tables
    ``x * scale[c] + offset[c]``, which the thread's part ``t`` holds unless they are
    another image's (made there then)."""
    cdef int* shift = <int*>(t + 256 * chans)
    cdef Py_ssize_t c, k
    cdef int kind = 1
    if shift[chans] != n:  # the image whose tables the thread holds
        for c in range(chans):
            _colour_table(scale[c], offset[c], t + 256 * c)
            shift[c] = cnnkit_table_shift(t + 256 * c)
        shift[chans] = <int>n
    for c in range(1, chans):
        if memcmp(t, t + 256 * c, 256) != 0:
            kind = 3 if chans == 3 else 0
    if kind == 3 and shift[0] != CNNKIT_NO_SHIFT and shift[1] != CNNKIT_NO_SHIFT \
            and shift[2] != CNNKIT_NO_SHIFT:
        cnnkit_shift3_avx512(s + lo, d + lo, hi - lo, shift)
    elif kind:
        cnnkit_lut_vbmi(s + lo, d + lo, hi - lo, t, kind)
    else:
        for k in range(lo, hi):
            d[k] = t[(k % chans) * 256 + s[k]]


cdef int _lut_start(Py_ssize_t chans, unsigned char[::1] scratch, int threads) except -1:
    """Checks lut_vbmi's scratch and marks each thread's tables as no image's."""
    cdef Py_ssize_t k
    if threads < 1 or scratch.shape[0] < lut_scratch_size(chans, threads):
        raise ValueError("lut_vbmi(): scratch must hold lut_scratch_size(C, threads) bytes")
    for k in range(threads):
        (<int*>(_lut_thread_part(&scratch[0], chans, k) + 256 * chans))[chans] = -1
    return 0


def lut_vbmi(const unsigned char[:, :, :, ::1] src, unsigned char[:, :, :, ::1] dst,
             const double[:, ::1] scale, const double[:, ::1] offset,
             unsigned char[::1] scratch, int threads):
    """``dst[n, i, j, c]`` = ``table[n, c, src[n, i, j, c]]`` for the tables of
    ``x * scale[n, c] + offset[n, c]`` (``colour_tables_u8``'s, without the integer fit),
    with AVX-512 lookups (the caller checks ``has_vbmi_lut``): an RGB image whose
    tables all are saturating shifts takes a saturating add and subtract per 64
    bytes, one whose channels share a table or another RGB image a VBMI lookup per
    64 bytes; other channel counts take ``lut``'s per-byte loop.

    Each thread makes the tables of the images its tasks fall in, in its part of
    ``scratch`` (``lut_scratch_size(C, threads)`` bytes, uninitialised), inside the
    parallel region: made serially before it, they took about 1 us an image, a
    tenth of the lookups. Each task is a fixed span of one image, so the result
    does not depend on the thread count."""
    cdef Py_ssize_t n_img = dst.shape[0], chans = dst.shape[3]
    cdef Py_ssize_t size = dst.shape[1] * dst.shape[2] * chans
    cdef Py_ssize_t per = (size + LUT_CHUNK - 1) // LUT_CHUNK
    cdef Py_ssize_t task, n, lo
    if size == 0:
        return
    _lut_start(chans, scratch, threads)
    for task in prange(n_img * per, nogil=True, num_threads=threads, schedule="static"):
        n = task // per
        lo = (task % per) * LUT_CHUNK
        _lut_span(&src[n, 0, 0, 0], &dst[n, 0, 0, 0], lo, min(lo + LUT_CHUNK, size), n, chans,
                  &scale[n, 0], &offset[n, 0], _lut_thread_part(&scratch[0], chans, threadid()))


def add_gaussian(const pixel[:, :, :, ::1] src, pixel[:, :, :, ::1] dst,
                 const unsigned short[:, :, :, ::1] index, const float[::1] table,
                 const float[::1] std, const float[::1] mean, float[:, ::1] scratch,
                 int threads):
    """``dst = src + mean[n] + std[n] * table[index]`` (saturating for uint8).

    ``table`` holds the 65,536 evenly spaced quantiles of N(0, 1) and ``index``
    random 16-bit draws: Gaussian noise at a fraction of the cost of drawing
    normals (a 16-bit quantised normal, finer than any 8-bit image). The table
    lookups go to a row of ``scratch`` ``(threads, W * C)`` first: apart from the
    arithmetic, the random loads overlap (about 5x faster than one fused loop).
    """
    cdef Py_ssize_t n_img = dst.shape[0], h = dst.shape[1], w = dst.shape[2]
    cdef Py_ssize_t row = dst.shape[2] * dst.shape[3]
    cdef Py_ssize_t task, n, i, k
    cdef const pixel* s
    cdef const unsigned short* r
    cdef pixel* d
    cdef float sd, mu
    cdef float* z
    cdef const float* quantiles = &table[0]
    for task in prange(n_img * h, nogil=True, num_threads=threads, schedule="static"):
        n = task // h
        i = task % h
        s = &src[n, i, 0, 0]
        r = &index[n, i, 0, 0]
        d = &dst[n, i, 0, 0]
        sd = std[n]
        mu = mean[n]
        z = &scratch[threadid(), 0]
        for k in range(row):
            z[k] = quantiles[r[k]]
        for k in range(row):
            if pixel is float:
                d[k] = s[k] + (mu + sd * z[k])
            else:
                d[k] = _round_u8(s[k] + (mu + sd * z[k]))


def add_noise(const pixel[:, :, :, ::1] src, pixel[:, :, :, ::1] dst, const float[:, :, :, ::1] noise,
              int threads):
    """``dst = src + noise`` (saturating for uint8)."""
    cdef Py_ssize_t n_img = dst.shape[0], h = dst.shape[1]
    cdef Py_ssize_t row = dst.shape[2] * dst.shape[3]
    cdef Py_ssize_t task, n, i, k
    cdef const pixel* s
    cdef const float* z
    cdef pixel* d
    for task in prange(n_img * h, nogil=True, num_threads=threads, schedule="static"):
        n = task // h
        i = task % h
        s = &src[n, i, 0, 0]
        z = &noise[n, i, 0, 0]
        d = &dst[n, i, 0, 0]
        for k in range(row):
            if pixel is float:
                d[k] = s[k] + z[k]
            else:
                d[k] = _round_u8(s[k] + z[k])


cdef extern from *:
    # NumPy's PCG64 (the bit generator of default_rng): a 128-bit LCG, each output
    # the XSL-RR of the state after a step, seeded from SeedSequence's four words as
    # numpy's pcg64_set_seed does. Jumps ahead in O(log n) (Brown's algorithm, as
    # PCG64.advance), so that any span of a stream is made without the ones before it.
    """
    #include <stdint.h>
    #if defined(__SIZEOF_INT128__)
    typedef unsigned __int128 cnnkit_u128;
    static const cnnkit_u128 CNNKIT_PCG_MULT =
        ((cnnkit_u128)2549297995355413924ULL << 64) + 4865540595714422341ULL;
    typedef struct { cnnkit_u128 state, inc; } cnnkit_pcg64;
    static inline void cnnkit_pcg64_seed(cnnkit_pcg64* g, const unsigned long long* words) {
        cnnkit_u128 seed = ((cnnkit_u128)words[0] << 64) | words[1];
        cnnkit_u128 seq = ((cnnkit_u128)words[2] << 64) | words[3];
        g->inc = (seq << 1) | 1u;
        g->state = g->inc;  /* a step from 0 */
        g->state += seed;
        g->state = g->state * CNNKIT_PCG_MULT + g->inc;
    }
    /* the multiplier and increment of n steps at once */
    static inline void cnnkit_pcg64_jump(cnnkit_u128 inc, uint64_t n, cnnkit_u128* mult,
                                         cnnkit_u128* plus) {
        cnnkit_u128 cur_mult = CNNKIT_PCG_MULT, cur_plus = inc, acc_mult = 1, acc_plus = 0;
        while (n > 0) {
            if (n & 1) {
                acc_mult *= cur_mult;
                acc_plus = acc_plus * cur_mult + cur_plus;
            }
            cur_plus = (cur_mult + 1) * cur_plus;
            cur_mult *= cur_mult;
            n >>= 1;
        }
        *mult = acc_mult;
        *plus = acc_plus;
    }
    static inline uint64_t cnnkit_pcg64_output(cnnkit_u128 state) {
        uint64_t x = (uint64_t)(state >> 64) ^ (uint64_t)state;
        unsigned rot = (unsigned)(state >> 122);
        return (x >> rot) | (x << ((64 - rot) & 63));
    }
    /* outputs start .. start + count - 1 of the generator seeded by words: four
       spans of the range stepped together (independent multiplies overlap; one
       chain would wait on each 128-bit multiply) */
    static void cnnkit_pcg64_fill(const unsigned long long* words, unsigned long long start, unsigned long long* out,
                                  ptrdiff_t count) {
        cnnkit_pcg64 g;
        cnnkit_u128 mult, plus, s0, s1, s2, s3;
        ptrdiff_t quarter = count / 4, k;
        cnnkit_pcg64_seed(&g, words);
        cnnkit_pcg64_jump(g.inc, start, &mult, &plus);
        s0 = mult * g.state + plus;
        cnnkit_pcg64_jump(g.inc, (uint64_t)quarter, &mult, &plus);
        s1 = mult * s0 + plus;
        s2 = mult * s1 + plus;
        s3 = mult * s2 + plus;
        for (k = 0; k < quarter; ++k) {
            s0 = s0 * CNNKIT_PCG_MULT + g.inc;
            s1 = s1 * CNNKIT_PCG_MULT + g.inc;
            s2 = s2 * CNNKIT_PCG_MULT + g.inc;
            s3 = s3 * CNNKIT_PCG_MULT + g.inc;
            out[k] = cnnkit_pcg64_output(s0);
            out[quarter + k] = cnnkit_pcg64_output(s1);
            out[2 * quarter + k] = cnnkit_pcg64_output(s2);
            out[3 * quarter + k] = cnnkit_pcg64_output(s3);
        }
        for (k = 4 * quarter; k < count; ++k) {
            s3 = s3 * CNNKIT_PCG_MULT + g.inc;
            out[k] = cnnkit_pcg64_output(s3);
        }
    }
    #define CNNKIT_HAVE_PCG64 1
    #else
    #define CNNKIT_HAVE_PCG64 0
    static void cnnkit_pcg64_fill(const unsigned long long* words, unsigned long long start, unsigned long long* out,
                                  ptrdiff_t count) {
        (void)words; (void)start; (void)out; (void)count;  /* callers check has_pcg64 */
    }
    #endif
    """
    int CNNKIT_HAVE_PCG64
    void cnnkit_pcg64_fill(const unsigned long long* words, unsigned long long start,
                           unsigned long long* out, Py_ssize_t count) noexcept nogil


def has_pcg64():
    """Whether this build has the native PCG64 (it needs a 128-bit integer type)."""
    return bool(CNNKIT_HAVE_PCG64)


def pcg64_outputs(const unsigned long long[::1] words, unsigned long long start,
                  unsigned long long[::1] out):
    """``out[k]`` = output ``start + k`` of the PCG64 seeded by SeedSequence ``words``
    (``seed_states``): ``default_rng(seed).bit_generator.random_raw`` from there."""
    with nogil:
        cnnkit_pcg64_fill(&words[0], start, &out[0], out.shape[0])


cdef extern from *:
    # One PCG64 generator as four words (state high, low, increment high, low): the
    # per-image generators of a batch as an (N, 4) array for draw_params.
    """
    #if defined(__SIZEOF_INT128__)
    static inline unsigned long long cnnkit_pcg64_next(unsigned long long* g) {
        cnnkit_u128 state = ((cnnkit_u128)g[0] << 64) | g[1];
        cnnkit_u128 inc = ((cnnkit_u128)g[2] << 64) | g[3];
        state = state * CNNKIT_PCG_MULT + inc;
        g[0] = (unsigned long long)(state >> 64);
        g[1] = (unsigned long long)state;
        return cnnkit_pcg64_output(state);
    }
    static inline void cnnkit_pcg64_words(const unsigned long long* words, unsigned long long* g) {
        cnnkit_pcg64 p;
        cnnkit_pcg64_seed(&p, words);
        g[0] = (unsigned long long)(p.state >> 64);
        g[1] = (unsigned long long)p.state;
        g[2] = (unsigned long long)(p.inc >> 64);
        g[3] = (unsigned long long)p.inc;
    }
    #else
    static inline unsigned long long cnnkit_pcg64_next(unsigned long long* g) { (void)g; return 0; }
    static inline void cnnkit_pcg64_words(const unsigned long long* words, unsigned long long* g) {
        (void)words; (void)g;
    }
    #endif
    """
    unsigned long long cnnkit_pcg64_next(unsigned long long* g) noexcept nogil
    void cnnkit_pcg64_words(const unsigned long long* words, unsigned long long* g) noexcept nogil


cdef enum:
    # kinds of draw_params' draws (the first column of ``spec``)
    DRAW_UNIFORM = 0  # _uniform(rng, (low, high)): rng.uniform, no draw when low == high
    DRAW_INT63 = 1    # rng.integers(0, 2**63)
    DRAW_NORMAL = 2   # low + high * normal_quantile(rng.random()), always one draw
    DRAW_SWAP = 3     # the swap index of rng.permutation's shuffle at position high


cdef inline unsigned int _pcg64_next32(unsigned long long* g) noexcept nogil:
    """numpy's PCG64 next_uint32: the low half of an output, its high half kept for the
    next call (``g[4]`` set, ``g[5]`` the half), as the bit generator's state does."""
    cdef unsigned long long v
    if g[4]:
        g[4] = 0
        return <unsigned int>g[5]
    v = cnnkit_pcg64_next(g)
    g[4] = 1
    g[5] = v >> 32
    return <unsigned int>(v & 0xFFFFFFFFULL)


def pcg64_generators(const unsigned long long[:, ::1] words, unsigned long long[:, ::1] out):
    """``out[n]`` = the PCG64 that SeedSequence words ``words[n]`` (``seed_states``) seed,
    as ``(state high, state low, increment high, increment low)``."""
    cdef Py_ssize_t n
    for n in range(words.shape[0]):
        cnnkit_pcg64_words(&words[n, 0], &out[n, 0])


cdef inline void _seeded_generator(unsigned long long seed, unsigned long long* g) noexcept nogil:
    """``g[:6]`` = the PCG64 of ``default_rng(seed)`` (seed below 2**64) as
    ``pcg64_generators`` gives it, no 32-bit half kept."""
    cdef unsigned int pool[4]
    cdef unsigned long long words[4]
    _seed_pool(seed, pool)
    _generate_state(pool, words, 4)
    cnnkit_pcg64_words(words, g)
    g[4] = 0
    g[5] = 0


def image_generators(const unsigned long long[::1] seeds, unsigned long long[:, ::1] out):
    """``out[n]`` (``(N, 6)``) = the generator of ``default_rng(seeds[n])``: ``seed_states``
    and ``pcg64_generators`` in one call, the kept half (``_pcg64_next32``) cleared."""
    cdef Py_ssize_t n
    for n in range(seeds.shape[0]):
        _seeded_generator(seeds[n], &out[n, 0])


def batch_generators(unsigned long long seed, unsigned long long[:, ::1] out):
    """``image_generators(seed_sequence_state(seed), out)`` without the seeds' array: the
    generators of the images of a batch called with ``seed`` (below 2**64)."""
    cdef Py_ssize_t n, count = out.shape[0]
    cdef unsigned int pool[4]
    cdef unsigned int hc = _STATE_HASH
    if count == 0:
        return
    _seed_pool(seed, pool)
    # _generate_state(pool, seeds, count), one output at a time
    for n in range(count):
        _seeded_generator(_state_output(pool, n, &hc), &out[n, 0])


cdef double _normal_quantile(double u) noexcept nogil:
    """The standard normal quantile of ``u`` in (0, 1): Wichura's algorithm AS 241
    (PPND16, Applied Statistics 37, 1988), relative error about 1e-16."""
    cdef double q = u - 0.5, r, num, den
    if fabs(q) <= 0.425:
        r = 0.180625 - q * q
        num = (((((((2.5090809287301226727e+3 * r + 3.3430575583588128105e+4) * r
                    + 6.7265770927008700853e+4) * r + 4.5921953931549871457e+4) * r
                  + 1.3731693765509461125e+4) * r + 1.9715909503065514427e+3) * r
                + 1.3314166789178437745e+2) * r + 3.3871328727963666080e+0) * q
        den = (((((((5.2264952788528545610e+3 * r + 2.8729085735721942674e+4) * r
                    + 3.9307895800092710610e+4) * r + 2.1213794301586595867e+4) * r
                  + 5.3941960214247511077e+3) * r + 6.8718700749205790830e+2) * r
                + 4.2313330701600911252e+1) * r + 1.0)
        return num / den
    r = u if q <= 0.0 else 1.0 - u
    r = sqrt(-log(r))
    if r <= 5.0:
        r = r - 1.6
        num = (((((((7.74545014278341407640e-4 * r + 2.27238449892691845833e-2) * r
                    + 2.41780725177450611770e-1) * r + 1.27045825245236838258e+0) * r
                  + 3.64784832476320460504e+0) * r + 5.76949722146069140550e+0) * r
                + 4.63033784615654529590e+0) * r + 1.42343711074968357734e+0)
        den = (((((((1.05075007164441684324e-9 * r + 5.47593808499534494600e-4) * r
                    + 1.51986665636164571966e-2) * r + 1.48103976427480074590e-1) * r
                  + 6.89767334985100004550e-1) * r + 1.67638483018380384940e+0) * r
                + 2.05319162663775882187e+0) * r + 1.0)
    else:
        r = r - 5.0
        num = (((((((2.01033439929228813265e-7 * r + 2.71155556874348757815e-5) * r
                    + 1.24266094738807843860e-3) * r + 2.65321895265761230930e-2) * r
                  + 2.96560571828504891230e-1) * r + 1.78482653991729133580e+0) * r
                + 5.46378491116411436990e+0) * r + 6.65790464350110377720e+0)
        den = (((((((2.04426310338993978564e-15 * r + 1.42151175831644588870e-7) * r
                    + 1.84631831751005468180e-5) * r + 7.86869131145613259100e-4) * r
                  + 1.48753612908506148525e-2) * r + 1.36929880922735805310e-1) * r
                + 5.99832206555887937690e-1) * r + 1.0)
    return -(num / den) if q < 0.0 else num / den


cdef inline double _unit_normal(double u) noexcept nogil:
    """A standard normal value from ``u = rng.random()`` in [0, 1): its quantile, with 0
    (probability 2**-53) taken as 2**-54."""
    return _normal_quantile(u if u > 0.0 else 5.551115123125783e-17)


def normal_from_unit(double u):
    """The normal value that ``draw_params``' DRAW_NORMAL makes from ``u = rng.random()``
    (before ``low + high *``): the standard normal quantile of ``u`` (0 taken as 2**-54)."""
    return _unit_normal(u)


cdef inline unsigned int _swap_index(unsigned long long* g, unsigned int i) noexcept nogil:
    """numpy's random_interval(rng, i) for 1 <= i < 2**32, as Generator.shuffle draws
    the swap partner of position ``i``: a 32-bit draw masked to the bits of ``i``,
    redrawn while above ``i``."""
    cdef unsigned int mask = i, value
    mask |= mask >> 1
    mask |= mask >> 2
    mask |= mask >> 4
    mask |= mask >> 8
    mask |= mask >> 16
    value = _pcg64_next32(g) & mask
    while value > i:
        value = _pcg64_next32(g) & mask
    return value


cdef bint _draw_one(unsigned long long* g, double p, bint test_p, const double[:, ::1] spec,
                    double* out) noexcept nogil:
    """draw_params for one image: whether it is applied, and its draws in ``out``."""
    cdef Py_ssize_t k
    cdef int kind
    cdef double low, high, scale = 1.0 / 9007199254740992.0
    cdef unsigned long long bits
    if test_p and not ((cnnkit_pcg64_next(g) >> 11) * scale < p):
        return False
    for k in range(spec.shape[0]):
        kind = <int>spec[k, 0]
        low = spec[k, 1]
        high = spec[k, 2]
        if kind == DRAW_INT63:
            bits = cnnkit_pcg64_next(g) >> 1
            memcpy(&out[k], &bits, 8)
        elif kind == DRAW_NORMAL:
            out[k] = low + high * _unit_normal((cnnkit_pcg64_next(g) >> 11) * scale)
        elif kind == DRAW_SWAP:
            out[k] = _swap_index(g, <unsigned int>high)
        elif low == high:
            out[k] = low
        else:
            out[k] = low + (high - low) * ((cnnkit_pcg64_next(g) >> 11) * scale)
    return True


def draw_params(unsigned long long[:, ::1] generators, const unsigned char[::1] active,
                double p, bint test_p, const double[:, ::1] spec, double[:, ::1] out,
                unsigned char[::1] applied):
    """Transform._run's draws for each ``active`` image ``n`` from its generator
    ``generators[n]`` (``(N, 6)``, ``pcg64_generators``' words and the kept 32-bit half,
    as ``draw_resized_crops``; advanced in place), the calls of numpy.random.Generator
    that it stands for reproduced bit for bit: ``applied[n] = rng.random() < p`` when
    ``test_p`` (else 1), then, if applied, ``out[n, k]`` by ``spec[k] = (kind, low,
    high)``: DRAW_UNIFORM is ``low + (high - low) * rng.random()`` (``rng.uniform``;
    ``low`` with no draw when ``low == high``), DRAW_INT63 ``rng.integers(0, 2**63)``
    (Lemire's method for that range: the output shifted right by one) stored as the
    int64's bits, DRAW_NORMAL ``low + high * normal_from_unit(rng.random())``, DRAW_SWAP
    the index that ``rng.permutation(m)`` swaps with position ``high`` (rows for
    ``high = m - 1, ..., 1`` in turn are its draws)."""
    cdef Py_ssize_t n
    for n in range(generators.shape[0]):
        applied[n] = 0
        if active[n]:
            applied[n] = _draw_one(&generators[n, 0], p, test_p, spec, &out[n, 0])


cdef inline void _batch_generator(const unsigned long long[::1] seeds, const unsigned int* pool,
                                  Py_ssize_t n, unsigned int* hc,
                                  unsigned long long* g) noexcept nogil:
    """Image ``n``'s generator of a batch call: ``batch_generators``' (from the seed's
    ``pool``; images in turn) when ``seeds`` is empty, else ``default_rng(seeds[n])``'s."""
    if seeds.shape[0] == 0:
        _seeded_generator(_state_output(pool, n, hc), g)
    else:
        _seeded_generator(seeds[n], g)


def batch_draws(unsigned long long seed, const unsigned long long[::1] seeds, double p,
                const double[:, ::1] spec, double[:, ::1] out):
    """``draw_params`` (tested against ``p``) for the images of a batch call, each from its
    generator (``_batch_generator``), in one call: whether every image is applied
    (``out[n]`` holds image ``n``'s draws where it is)."""
    cdef Py_ssize_t n
    cdef unsigned long long g[6]
    cdef unsigned int pool[4]
    cdef unsigned int hc = _STATE_HASH
    cdef bint every = True
    if seeds.shape[0] == 0:
        _seed_pool(seed, pool)
    for n in range(out.shape[0]):
        _batch_generator(seeds, pool, n, &hc, g)
        if not _draw_one(g, p, True, spec, &out[n, 0]):
            every = False
    return every


cdef enum:
    # colour_affine_draws' coefficients: the transforms' coefficients() methods
    AFFINE_SHIFT = 0        # RGBShift: offset[c] = v[c] * unit
    AFFINE_BRIGHTNESS = 1   # RandomBrightnessContrast: scale = 1 + v[0], offset = v[1] * unit
    AFFINE_PCA = 2          # PCAColour: offset[c] = sum_i (v[i] l[i]) P[c, i], times unit


cdef Py_ssize_t _affine_coefficients(
        unsigned long long seed, const unsigned long long[::1] seeds, double p,
        const double[:, ::1] spec, int mode, double unit, const double[::1] eigenvalues,
        const double[:, ::1] eigenvectors, double[:, ::1] scale, double[:, ::1] offset,
        unsigned char* applied) noexcept nogil:
    """colour_affine_draws' work (``applied`` may be NULL); the number of images applied."""
    cdef Py_ssize_t n, c, count = scale.shape[0], chans = scale.shape[1]
    cdef unsigned long long g[6]
    cdef double v[8]
    cdef double a0, a1, a2
    cdef unsigned int pool[4]
    cdef unsigned int hc = _STATE_HASH
    cdef unsigned char on
    cdef Py_ssize_t total = 0
    if seeds.shape[0] == 0:
        _seed_pool(seed, pool)
    for n in range(count):
        _batch_generator(seeds, pool, n, &hc, g)
        on = _draw_one(g, p, True, spec, v)
        total += on
        if applied != NULL:
            applied[n] = on
        for c in range(chans):
            scale[n, c] = 1.0
            offset[n, c] = 0.0
        if not on:
            continue
        if mode == AFFINE_SHIFT:
            for c in range(chans):
                offset[n, c] = v[c] * unit
        elif mode == AFFINE_BRIGHTNESS:
            for c in range(chans):
                scale[n, c] = 1.0 + v[0]
                offset[n, c] = v[1] * unit
        else:
            a0 = v[0] * eigenvalues[0]
            a1 = v[1] * eigenvalues[1]
            a2 = v[2] * eigenvalues[2]
            for c in range(chans):
                offset[n, c] = (a0 * eigenvectors[c, 0] + a1 * eigenvectors[c, 1]
                                + a2 * eigenvectors[c, 2]) * unit
    return total


def colour_affine_draws(unsigned long long seed, const unsigned long long[::1] seeds, double p,
                        const double[:, ::1] spec, int mode, double unit,
                        const double[::1] eigenvalues, const double[:, ::1] eigenvectors,
                        double[:, ::1] scale, double[:, ::1] offset,
                        unsigned char[::1] applied):
    """The coefficients of a colour-affine transform's batch call (cnnkit.augment's
    _ColourAffine._batch) in one call: image ``n``'s generator is
    ``batch_generators(seed)``'s when ``seeds`` is empty, else ``default_rng(seeds[n])``;
    its draws are draw_params' (tested against ``p``; ``spec`` at most 8 rows), and its
    ``scale[n]`` and ``offset[n]`` (``(N, C)``) those that the transform's coefficients()
    makes from them by ``mode`` (AFFINE_*), the same float64 operations in the same
    order; an image not applied gets ``x * 1 + 0``."""
    if spec.shape[0] > 8:
        raise ValueError("colour_affine_draws(): spec must have at most 8 rows")
    _affine_coefficients(seed, seeds, p, spec, mode, unit, eigenvalues, eigenvectors, scale,
                         offset, &applied[0] if applied.shape[0] else NULL)


def colour_affine_lut(unsigned long long seed, const unsigned long long[::1] seeds, double p,
                      const double[:, ::1] spec, int mode, double unit,
                      const double[::1] eigenvalues, const double[:, ::1] eigenvectors,
                      const unsigned char[:, :, :, ::1] src, unsigned char[:, :, :, ::1] dst,
                      double[:, :, ::1] coefficients, unsigned char[::1] scratch, int threads):
    """``colour_affine_draws`` then ``lut_vbmi`` in one call: the uint8 batch path of the
    colour-affine transforms on a CPU with VBMI, whose Python between the two calls
    (a dozen small operations, slow after a pass over the batch has left the caches
    full of pixels) was most of the call's serial part. ``coefficients`` is ``(2, N,
    C)`` scratch (scale, offset), ``scratch`` lut_vbmi's. An image not applied gets
    the identity table (``x * 1 + 0``): it is left as it is, as the general path leaves
    it."""
    cdef Py_ssize_t n_img = dst.shape[0], chans = dst.shape[3]
    cdef Py_ssize_t size = dst.shape[1] * dst.shape[2] * chans
    cdef Py_ssize_t per = (size + LUT_CHUNK - 1) // LUT_CHUNK
    cdef Py_ssize_t task, n, lo
    if spec.shape[0] > 8:
        raise ValueError("colour_affine_lut(): spec must have at most 8 rows")
    if size == 0:
        return
    _affine_coefficients(seed, seeds, p, spec, mode, unit, eigenvalues, eigenvectors,
                         coefficients[0], coefficients[1], NULL)
    _lut_start(chans, scratch, threads)
    for task in prange(n_img * per, nogil=True, num_threads=threads, schedule="static"):
        n = task // per
        lo = (task % per) * LUT_CHUNK
        _lut_span(&src[n, 0, 0, 0], &dst[n, 0, 0, 0], lo, min(lo + LUT_CHUNK, size), n, chans,
                  &coefficients[0, n, 0], &coefficients[1, n, 0],
                  _lut_thread_part(&scratch[0], chans, threadid()))


cdef inline long long _pcg64_below(unsigned long long* g, long long high) noexcept nogil:
    """``rng.integers(0, high)`` for ``1 <= high <= 2**32``: no draw when high is 1, else
    numpy's Lemire rejection on 32-bit draws."""
    cdef unsigned int top = <unsigned int>(high - 1), excl, leftover, threshold
    cdef unsigned long long m
    if top == 0:
        return 0
    excl = top + 1
    m = <unsigned long long>_pcg64_next32(g) * excl
    leftover = <unsigned int>(m & 0xFFFFFFFFULL)
    if leftover < excl:
        threshold = (<unsigned int>0xFFFFFFFF - top) % excl
        while leftover < threshold:
            m = <unsigned long long>_pcg64_next32(g) * excl
            leftover = <unsigned int>(m & 0xFFFFFFFFULL)
    return <long long>(m >> 32)


cdef bint _draw_resized_crop(unsigned long long* g, double p, bint test_p, long long height,
                             long long width, double scale_low, double scale_range,
                             double log_ratio_low, double log_ratio_range, double ratio_low,
                             double ratio_high, long long* window) noexcept nogil:
    """draw_resized_crops for one image: whether it is applied, and its window."""
    cdef int attempt
    cdef double unit = 1.0 / 9007199254740992.0, area = <double>(height * width)
    cdef double target, aspect, w, h, in_ratio
    if test_p and not ((cnnkit_pcg64_next(g) >> 11) * unit < p):
        return False
    for attempt in range(10):
        target = area * (scale_low + scale_range * ((cnnkit_pcg64_next(g) >> 11) * unit))
        aspect = exp(log_ratio_low + log_ratio_range * ((cnnkit_pcg64_next(g) >> 11) * unit))
        w = nearbyint(sqrt(target * aspect))
        h = nearbyint(sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            window[0] = _pcg64_below(g, height - <long long>h + 1)
            window[1] = _pcg64_below(g, width - <long long>w + 1)
            window[2] = <long long>h
            window[3] = <long long>w
            return True
    in_ratio = <double>width / <double>height
    if in_ratio < ratio_low:
        w = <double>width
        h = nearbyint(<double>width / ratio_low)
    elif in_ratio > ratio_high:
        h = <double>height
        w = nearbyint(<double>height * ratio_high)
    else:
        w = <double>width
        h = <double>height
    window[0] = (height - <long long>h) // 2
    window[1] = (width - <long long>w) // 2
    window[2] = max(<long long>h, 1)
    window[3] = max(<long long>w, 1)
    return True


def draw_resized_crops(unsigned long long[:, ::1] generators, const unsigned char[::1] active,
                       double p, bint test_p, long long height, long long width,
                       double scale_low, double scale_range, double log_ratio_low,
                       double log_ratio_range, double ratio_low, double ratio_high,
                       long long[:, ::1] windows, unsigned char[::1] applied):
    """RandomResizedCrop.sample for each ``active`` image from its generator
    ``generators[n]`` (``(N, 6)``: ``pcg64_generators``' four words, then numpy's kept
    32-bit half: a flag and the half), advanced in place, bit for bit: ``applied[n] =
    rng.random() < p`` when ``test_p``, then up to ten tries of an area fraction
    ``scale_low + scale_range rng.random()`` and an aspect ``exp(log_ratio_low +
    log_ratio_range rng.random())``, the side lengths rounded half to even (Python's
    round), the first window that fits placed by ``rng.integers`` (numpy's Lemire
    method on 32-bit draws), else the centre crop clamped to the ratio range.
    ``windows[n]`` = (top, left, height, width). Images must be at most 2**32 - 1
    pixels a side."""
    cdef Py_ssize_t n
    with nogil:
        for n in range(generators.shape[0]):
            applied[n] = 0
            if active[n]:
                applied[n] = _draw_resized_crop(
                    &generators[n, 0], p, test_p, height, width, scale_low, scale_range,
                    log_ratio_low, log_ratio_range, ratio_low, ratio_high, &windows[n, 0])


cdef enum:
    # resized_crops_fixed3's split of the batch's output rows over the threads, by cost:
    # a vertical pass per output row and a horizontal pass per input row read take
    # about the same (0.074 and 0.078 us a 224-pixel row: one-thread times of 64 windows
    # resampled to 224 x 224, fitted against their rows read, bench/augment_balance.py)
    FIXED3_VPASS_COST = 1
    FIXED3_HPASS_COST = 1


cdef inline double _fixed3_cost(long long height, Py_ssize_t out_h) noexcept nogil:
    """The work of resampling a window of ``height`` rows to ``out_h`` rows: its output
    rows, and the input rows whose horizontal pass they read (every row of a window
    that grows, up to two per output row for one that shrinks)."""
    return <double>(FIXED3_VPASS_COST * out_h + FIXED3_HPASS_COST * min(height + 1, 2 * out_h))


cdef Py_ssize_t _fixed3_split(const long long* windows, Py_ssize_t n_img, Py_ssize_t out_h,
                              double target) noexcept nogil:
    """The first output row (counted through the batch) after the rows whose cost adds up
    to ``target``: the rows of an image cost the same, a share of its _fixed3_cost."""
    cdef Py_ssize_t n, k
    cdef double acc = 0.0, cost
    for n in range(n_img):
        cost = _fixed3_cost(windows[4 * n + 2], out_h)
        if acc + cost > target:
            k = <Py_ssize_t>((target - acc) / cost * out_h)
            return n * out_h + min(max(k, 0), out_h)
        acc = acc + cost
    return n_img * out_h


cdef inline int* _line_start(int* p) noexcept nogil:
    """The first 64-byte boundary at ``p`` or after: a thread's scratch starts on its own
    cache line (rows of fixed3_scratch_size have 16 ints of slack), so that two threads
    never write to one line (a line shared by the rows of a 16-byte aligned NumPy array
    went back and forth between the cores on every horizontal pass)."""
    return <int*>((<size_t>p + 63) & ~(<size_t>63))


def fixed3_scratch_size(Py_ssize_t out_w):
    """The int32 scratch per thread of resample_linear_fixed3 and resized_crops_fixed3 for
    rows of ``out_w``: a column table and two cached horizontal passes of three channel
    planes, each ``out_w`` rounded up to 16, and a line of slack for aligning them."""
    return 7 * ((out_w + 15) // 16 * 16) + 32


cdef void _crop_rows_fixed3(const unsigned char* src, Py_ssize_t h, Py_ssize_t w,
                            const long long* windows, Py_ssize_t n, Py_ssize_t out_h,
                            Py_ssize_t out_w, Py_ssize_t first, Py_ssize_t stop, int* work,
                            Py_ssize_t stride, Py_ssize_t* state,
                            unsigned char* dst) noexcept nogil:
    """Output rows ``[first, stop)`` of image ``n``'s window (top, left, height, width) of
    3-channel images resampled to ``out_h x out_w`` as resample_linear_fixed3 with
    fixed_linear_taps' tables, the tables made here: the columns' in ``work``, each
    row's when it comes; ``work`` then holds the two cached horizontal passes.

    ``state`` (the image whose column table ``work`` holds, or -1, then the input rows of
    the two cached passes, or -1) carries the tables and passes over a thread's calls, so
    that rows split into several calls (cnnkit_fixed3_claim's pieces) make them once."""
    cdef const unsigned char* image = src + n * h * w * 3
    cdef const long long* window = windows + 4 * n
    cdef unsigned char* out = dst + n * out_h * out_w * 3
    cdef int* cx = work
    cdef int* buf0 = work + stride
    cdef int* buf1 = buf0 + 3 * stride
    cdef Py_ssize_t row = w * 3, i, k
    cdef double top = <double>window[0], left = <double>window[1]
    cdef double lo, hi, scale
    cdef int y, ra, rb, last
    cdef Py_ssize_t tag0 = state[1], tag1 = state[2]
    if state[0] != n:
        _window_edges(left, <double>window[3], w, &lo, &hi)
        scale = <double>window[3] / out_w
        for k in range(out_w):
            cx[k] = _fixed_position(left, lo, hi, scale, k)
        state[0] = n
        tag0 = -1
        tag1 = -1
    _window_edges(top, <double>window[2], h, &lo, &hi)
    scale = <double>window[2] / out_h
    last = <int>hi
    for i in range(first, stop):
        y = _fixed_position(top, lo, hi, scale, i)
        ra = y >> 11
        rb = min(ra + 1, last)
        # keep a cached row that this output row needs; fill the other slot
        if tag0 != ra and tag1 != ra:
            if tag0 == rb:
                cnnkit_hpass3(image + ra * row, (h - ra) * row, cx, out_w, buf1, stride)
                tag1 = ra
            else:
                cnnkit_hpass3(image + ra * row, (h - ra) * row, cx, out_w, buf0, stride)
                tag0 = ra
        if tag0 != rb and tag1 != rb:
            if tag0 == ra:
                cnnkit_hpass3(image + rb * row, (h - rb) * row, cx, out_w, buf1, stride)
                tag1 = rb
            else:
                cnnkit_hpass3(image + rb * row, (h - rb) * row, cx, out_w, buf0, stride)
                tag0 = rb
        cnnkit_vpass3(buf0 if tag0 == ra else buf1, buf0 if tag0 == rb else buf1, stride,
                      y & 2047, out_w, out + i * out_w * 3)
    state[1] = tag0
    state[2] = tag1


cdef extern from *:
    # A thread's share of resized_crops_fixed3's rows, claimed in pieces: one 64-bit word
    # holds the share's unclaimed units [front, back) as two 32-bit halves, so that a
    # compare-and-swap claims a piece without a lock. The owner takes pieces from the
    # front, a thread that has finished its own share takes them from the back; each
    # piece is a fraction of what is left (at least ``least`` units), so a share costs
    # a few dozen claims and the threads end within a small piece of each other.
    """
    #if defined(_MSC_VER)
    #include <intrin.h>
    static int cnnkit_cas64(unsigned long long* p, unsigned long long* old,
                            unsigned long long next) {
        unsigned long long seen = (unsigned long long)_InterlockedCompareExchange64(
            (volatile long long*)p, (long long)next, (long long)*old);
        if (seen == *old) return 1;
        *old = seen;
        return 0;
    }
    static unsigned long long cnnkit_load64(unsigned long long* p) {
        return (unsigned long long)_InterlockedCompareExchange64((volatile long long*)p, 0, 0);
    }
    #else
    static int cnnkit_cas64(unsigned long long* p, unsigned long long* old,
                            unsigned long long next) {
        return __atomic_compare_exchange_n(p, old, next, 1, __ATOMIC_RELAXED,
                                           __ATOMIC_RELAXED);
    }
    static unsigned long long cnnkit_load64(unsigned long long* p) {
        return __atomic_load_n(p, __ATOMIC_RELAXED);
    }
    #endif
    static long long cnnkit_fixed3_claim(unsigned long long* share, int from_back,
                                         long long least, long long* first) {
        unsigned long long old = cnnkit_load64(share), next;
        long long front, back, take;
        do {
            front = (long long)(old & 0xFFFFFFFFULL);
            back = (long long)(old >> 32);
            if (front >= back) return 0;
            take = (back - front) / 4;
            if (take < least) take = least;
            if (take > back - front) take = back - front;
            next = from_back
                ? ((unsigned long long)(back - take) << 32) | (unsigned long long)front
                : ((unsigned long long)back << 32) | (unsigned long long)(front + take);
        } while (!cnnkit_cas64(share, &old, next));
        *first = from_back ? back - take : front;
        return take;
    }
    """
    long long cnnkit_fixed3_claim(unsigned long long* share, int from_back, long long least,
                                  long long* first) noexcept nogil


cdef enum:
    # the least piece of a share that cnnkit_fixed3_claim hands out, in output rows (about
    # 1.5 us of 224-pixel rows): the most by which the threads' ends differ
    FIXED3_LEAST_ROWS = 8
    # the words of the shares' array per share: each on a cache line of its own
    FIXED3_SHARE_WORDS = 8


cdef void _crop_share_fixed3(const unsigned char* src, Py_ssize_t h, Py_ssize_t w,
                             const long long* windows, Py_ssize_t n_img, Py_ssize_t out_h,
                             Py_ssize_t out_w, Py_ssize_t part, Py_ssize_t parts,
                             const Py_ssize_t* starts, unsigned long long* shares,
                             Py_ssize_t unit, int* work, Py_ssize_t stride,
                             unsigned char* dst) noexcept nogil:
    """Thread ``part``'s work in resized_crops_fixed3: its share of the batch's output rows
    (``starts[part]`` to ``starts[part + 1]``, counted through the batch, in pieces of
    ``unit`` rows) claimed from the front, then the other shares' rest from the back.
    Which thread makes a row changes none of its bits."""
    cdef Py_ssize_t state[3]
    cdef Py_ssize_t v, victim, g, end, n, i, stop
    cdef long long first, count
    cdef long long least = max(FIXED3_LEAST_ROWS // unit, 1)
    state[0] = -1
    state[1] = -1
    state[2] = -1
    for v in range(parts):
        victim = (part + v) % parts
        while True:
            count = cnnkit_fixed3_claim(&shares[FIXED3_SHARE_WORDS * victim], v > 0, least,
                                        &first)
            if count == 0:
                break
            g = starts[victim] + first * unit
            end = min(g + count * unit, starts[victim + 1])
            while g < end:
                n = g // out_h
                i = g - n * out_h
                stop = min(out_h, i + end - g)
                _crop_rows_fixed3(src, h, w, windows, n, out_h, out_w, i, stop, work, stride,
                                  state, dst)
                g = g + stop - i


def resized_crops_fixed3(unsigned long long[:, ::1] generators, double p, double scale_low,
                         double scale_range, double log_ratio_low, double log_ratio_range,
                         double ratio_low, double ratio_high,
                         const unsigned char[:, :, :, ::1] src, unsigned char[:, :, :, ::1] dst,
                         long long[:, ::1] windows, int[:, ::1] scratch, int threads,
                         unsigned long long seed=0, const unsigned long long[::1] seeds=None):
    """RandomResizedCrop's batch call on 3-channel uint8 images in one call without the
    GIL: each image's window drawn as draw_resized_crops (``test_p`` set), then resampled
    as resample_linear_fixed3 with fixed_linear_taps' tables, bit for bit.

    Returns 0 when ``dst`` holds the result; 1 when an image is not applied and 2 when
    every window is of the output size (``windows`` holds the draws; ``dst`` is not
    written): the caller's general and plain-crop paths.

    ``generators`` None: image ``n``'s generator is made here from ``seed`` and
    ``seeds`` as batch_draws makes it (``batch_generators(seed)``'s when ``seeds`` is
    empty, else ``default_rng(seeds[n])``'s). ``windows`` None: the draws are kept
    here only. ``scratch`` None: the threads' scratch is allocated here, else it is
    ``(threads, fixed3_scratch_size(out_w))`` int32. A batch call passes all three as None: each
    array made and converted in Python cost microseconds of the call's serial part,
    more after a pass over the batch has left the caches full of pixels.

    The serial part is the draws; the tables are made by the threads. The batch's
    output rows are shared out over ``threads`` by their cost (_fixed3_cost: a window
    that shrinks reads more input rows per output row), not by image or by equal bands:
    random windows made a static split of images uneven. A thread that ends its share
    takes the rest of the others' from their far end (cnnkit_fixed3_claim), so that the
    threads end together whatever the machine gives each of them. The split changes no
    bit (integer arithmetic).
    """
    cdef Py_ssize_t n_img = dst.shape[0], out_h = dst.shape[1], out_w = dst.shape[2]
    cdef Py_ssize_t h = src.shape[1], w = src.shape[2]
    cdef Py_ssize_t stride = (out_w + 15) // 16 * 16
    cdef Py_ssize_t n, t, rows = n_img * out_h, unit
    cdef int status = 2
    cdef double total = 0.0
    cdef bint own = generators is None
    cdef unsigned long long g[6]
    cdef unsigned long long* gen
    cdef unsigned int pool[4]
    cdef unsigned int hc = _STATE_HASH
    cdef long long* drawn
    cdef Py_ssize_t* starts
    cdef unsigned long long* shares
    cdef int* base
    cdef Py_ssize_t part_ints
    cdef unsigned long long* aligned
    if (src.shape[0] != n_img or src.shape[3] != 3 or dst.shape[3] != 3 or threads < 1
            or (own and seeds is None)
            or (not own and generators.shape[0] != n_img)
            or (windows is not None and windows.shape[0] != n_img)
            or (scratch is not None
                and (scratch.shape[0] < threads or scratch.shape[1] < 7 * stride + 32))):
        raise ValueError("resized_crops_fixed3(): inconsistent shapes or thread count")
    if n_img == 0:
        return 2
    drawn = &windows[0, 0] if windows is not None else <long long*>malloc(
        4 * n_img * sizeof(long long))
    # each share's word on a cache line of its own: 64-byte aligned, one line apiece
    shares = <unsigned long long*>malloc((threads + 1) * FIXED3_SHARE_WORDS * 8)
    starts = <Py_ssize_t*>malloc((threads + 1) * sizeof(Py_ssize_t))
    base = <int*>malloc(threads * (7 * stride + 32) * sizeof(int)) if scratch is None else NULL
    if drawn == NULL or shares == NULL or starts == NULL or (scratch is None and base == NULL):
        if windows is None:
            free(drawn)
        free(shares)
        free(starts)
        free(base)
        raise MemoryError("resized_crops_fixed3(): no memory for its work space")
    with nogil:
        if own and seeds.shape[0] == 0:
            _seed_pool(seed, pool)
        for n in range(n_img):
            if own:
                _batch_generator(seeds, pool, n, &hc, g)
                gen = g
            else:
                gen = &generators[n, 0]
            if not _draw_resized_crop(gen, p, True, h, w, scale_low, scale_range,
                                      log_ratio_low, log_ratio_range, ratio_low, ratio_high,
                                      drawn + 4 * n):
                status = 1
                break
            if drawn[4 * n + 2] != out_h or drawn[4 * n + 3] != out_w:
                status = 0
            total = total + _fixed3_cost(drawn[4 * n + 2], out_h)
    if status == 0:
        # units of rows such that a share's count fits a claim word's 32-bit half
        unit = rows // 0x7FFFFFFF + 1
        aligned = <unsigned long long*>_line_start(<int*>shares)
        for t in range(threads):
            starts[t] = _fixed3_split(drawn, n_img, out_h, total * t / threads)
        starts[threads] = rows
        for t in range(threads):
            aligned[FIXED3_SHARE_WORDS * t] = (
                <unsigned long long>((starts[t + 1] - starts[t] + unit - 1) // unit) << 32)
        part_ints = 7 * stride + 32
        if scratch is not None:
            base = &scratch[0, 0]
            part_ints = scratch.shape[1]
        for t in prange(threads, nogil=True, num_threads=threads, schedule="static",
                        chunksize=1):
            _crop_share_fixed3(&src[0, 0, 0, 0], h, w, drawn, n_img, out_h, out_w, t, threads,
                               starts, aligned, unit, _line_start(base + t * part_ints),
                               stride, &dst[0, 0, 0, 0])
    if windows is None:
        free(drawn)
    if scratch is None:
        free(base)
    free(shares)
    free(starts)
    return status


def elastic_fields(const unsigned long long[:, ::1] words, const float[::1] taps, float alpha,
                   float[:, :, ::1] dx, float[:, :, ::1] dy, float[:, ::1] scratch,
                   int[:, ::1] rows, int threads):
    """Simard's displacement fields of a batch, the draws made here: image ``n``'s raw
    fields are ``default_rng(seed).random((2, H, W), dtype=np.float32) * 2 - 1`` for the
    generator that SeedSequence words ``words[n]`` (``seed_states``) seed, bit for bit
    (NumPy's float32 draws take the low then the high 32 bits of each 64-bit output,
    keeping the top 24), blurred by ``taps`` (as ``gaussian_blur``) and scaled by
    ``alpha`` into ``dx[n]`` and ``dy[n]``.

    One field per task (draws, both passes and the scale in one thread's cache),
    taken by whichever thread is free, so the result does not depend on the thread
    count. ``scratch`` is ``(threads, 4 H W + 6)`` floats (rounded up to an even count),
    ``rows`` ``(threads, W + H + 2 len(taps))``.
    """
    cdef Py_ssize_t n_img = dx.shape[0], h = dx.shape[1], w = dx.shape[2]
    cdef Py_ssize_t size = h * w
    cdef int k = taps.shape[0]
    cdef Py_ssize_t task, n, q, e, first, tid
    cdef unsigned long long* raw
    cdef float* field
    cdef float* out
    cdef unsigned int bits
    cdef float unit = 1.0 / 16777216.0
    if n_img * size == 0:
        return
    for task in prange(2 * n_img, nogil=True, num_threads=threads, schedule="dynamic"):
        n = task // 2
        tid = threadid()
        field = &scratch[tid, 0]
        # the 64-bit outputs behind this field's floats, after the field and its work space
        raw = <unsigned long long*>&scratch[tid, (3 * size + 1) // 2 * 2]
        first = (task % 2) * size  # the field's first float of the image's stream
        cnnkit_pcg64_fill(&words[n, 0], first // 2, raw, (first % 2 + size + 1) // 2)
        for q in range(size):
            e = first % 2 + q
            bits = <unsigned int>(raw[e >> 1] >> (32 * (e & 1)))
            field[q] = <float>(bits >> 8) * unit * <float>2.0 - <float>1.0
        out = &dx[n, 0, 0] if task % 2 == 0 else &dy[n, 0, 0]
        _blur_field(field, out, h, w, &taps[0], k, field + size, &rows[tid, 0])
        for q in range(size):
            out[q] = out[q] * alpha


cpdef Py_ssize_t gaussian_part(Py_ssize_t band, Py_ssize_t row):
    """The bytes of a thread's scratch in add_gaussian_seeded for bands of ``band`` rows of
    ``row`` values: the band's 64-bit outputs, then a row of float32 normals."""
    return 8 * (band * row // 4 + row // 2 + 4)


def add_gaussian_seeded(const pixel[:, :, :, ::1] src, pixel[:, :, :, ::1] dst,
                        const unsigned long long[:, ::1] words, const float[::1] table,
                        const float[::1] std, const float[::1] mean,
                        unsigned char[::1] scratch, Py_ssize_t band, int threads):
    """``add_gaussian`` with the 16-bit draws made here: image ``n``'s are the bytes of
    the PCG64 stream seeded by ``words[n]`` (``seed_states``), the bytes that
    ``random_uint16(default_rng(seed), H W C)`` gives, so the result equals
    ``add_gaussian`` of those draws bit for bit.

    Tasks are bands of ``band`` rows of an image, each making its span of the
    stream after a jump ahead, so the draws run on every thread and the result
    does not depend on the thread count. ``scratch`` is
    ``thread_parts_size(gaussian_part(band, W C), threads)`` bytes: each thread's
    band of draws, then a row of normals, on cache lines of their own.
    """
    cdef Py_ssize_t n_img = dst.shape[0], h = dst.shape[1]
    cdef Py_ssize_t row = dst.shape[2] * dst.shape[3]
    cdef Py_ssize_t bands = (h + band - 1) // band
    cdef Py_ssize_t task, n, i, i0, i1, k, first, outputs
    cdef const pixel* s
    cdef const unsigned short* r
    cdef pixel* d
    cdef unsigned long long* raw
    cdef float* z
    cdef float sd, mu
    cdef const float* quantiles = &table[0]
    cdef Py_ssize_t part = gaussian_part(band, row)
    if threads < 1 or scratch.shape[0] < thread_parts_size(part, threads):
        raise ValueError("add_gaussian_seeded(): scratch must hold "
                         "thread_parts_size(gaussian_part(band, W C), threads) bytes")
    if n_img * h * row == 0:
        return
    for task in prange(n_img * bands, nogil=True, num_threads=threads, schedule="dynamic"):
        n = task // bands
        i0 = (task % bands) * band
        i1 = min(i0 + band, h)
        first = i0 * row  # the band's first 16-bit draw
        outputs = (first % 4 + (i1 - i0) * row + 3) // 4
        raw = <unsigned long long*>_thread_part(&scratch[0], part, threadid())
        z = <float*>(raw + outputs + 1)
        cnnkit_pcg64_fill(&words[n, 0], first // 4, raw, outputs)
        sd = std[n]
        mu = mean[n]
        for i in range(i0, i1):
            r = <const unsigned short*>raw + first % 4 + (i - i0) * row
            s = &src[n, i, 0, 0]
            d = &dst[n, i, 0, 0]
            for k in range(row):
                z[k] = quantiles[r[k]]
            for k in range(row):
                if pixel is float:
                    d[k] = s[k] + (mu + sd * z[k])
                else:
                    d[k] = _round_u8(s[k] + (mu + sd * z[k]))


cdef inline float _clamp(float value, float top) noexcept nogil:
    # "a if a > b else b" is exactly what the SSE/AVX max (and min) instructions
    # compute, also for NaN and signed zeros, so these selects are one instruction each
    value = value if value > <float>0.0 else <float>0.0
    return value if value < top else top


cdef inline unsigned char _round_u8(float value) noexcept nogil:
    """_saturate in two vector instructions (see _clamp) before the conversion."""
    return <unsigned char>_clamp(value + <float>0.5, <float>255.0)


cdef extern from *:
    # Interleaved RGB bytes to planar float rows, 16 pixels a step: three byte shuffles
    # gather each channel (the compiler keeps the stride-3 loop scalar, about a third of
    # ColorJitter's time went there). Plain data movement: the same floats as the loop.
    """
    #if defined(__AVX2__)
    #include <immintrin.h>
    static inline ptrdiff_t cnnkit_rgb_planes_u8(const unsigned char* s, float* rgb,
                                                 ptrdiff_t w) {
        const __m128i ra = _mm_setr_epi8(0, 3, 6, 9, 12, 15, -128, -128, -128, -128, -128,
                                         -128, -128, -128, -128, -128);
        const __m128i ga = _mm_setr_epi8(1, 4, 7, 10, 13, -128, -128, -128, -128, -128,
                                         -128, -128, -128, -128, -128, -128);
        const __m128i ba = _mm_setr_epi8(2, 5, 8, 11, 14, -128, -128, -128, -128, -128,
                                         -128, -128, -128, -128, -128, -128);
        const __m128i rb = _mm_setr_epi8(-128, -128, -128, -128, -128, -128, 2, 5, 8, 11, 14,
                                         -128, -128, -128, -128, -128);
        const __m128i gb = _mm_setr_epi8(-128, -128, -128, -128, -128, 0, 3, 6, 9, 12, 15,
                                         -128, -128, -128, -128, -128);
        const __m128i bb = _mm_setr_epi8(-128, -128, -128, -128, -128, 1, 4, 7, 10, 13, -128,
                                         -128, -128, -128, -128, -128);
        const __m128i rc = _mm_setr_epi8(-128, -128, -128, -128, -128, -128, -128, -128, -128,
                                         -128, -128, 1, 4, 7, 10, 13);
        const __m128i gc = _mm_setr_epi8(-128, -128, -128, -128, -128, -128, -128, -128, -128,
                                         -128, -128, 2, 5, 8, 11, 14);
        const __m128i bc = _mm_setr_epi8(-128, -128, -128, -128, -128, -128, -128, -128, -128,
                                         -128, 0, 3, 6, 9, 12, 15);
        ptrdiff_t j;
        for (j = 0; j + 16 <= w; j += 16) {
            const __m128i a = _mm_loadu_si128((const __m128i*)(s + 3 * j));
            const __m128i b = _mm_loadu_si128((const __m128i*)(s + 3 * j + 16));
            const __m128i c = _mm_loadu_si128((const __m128i*)(s + 3 * j + 32));
            __m128i plane[3];
            int k;
            plane[0] = _mm_or_si128(_mm_or_si128(_mm_shuffle_epi8(a, ra), _mm_shuffle_epi8(b, rb)),
                                    _mm_shuffle_epi8(c, rc));
            plane[1] = _mm_or_si128(_mm_or_si128(_mm_shuffle_epi8(a, ga), _mm_shuffle_epi8(b, gb)),
                                    _mm_shuffle_epi8(c, gc));
            plane[2] = _mm_or_si128(_mm_or_si128(_mm_shuffle_epi8(a, ba), _mm_shuffle_epi8(b, bb)),
                                    _mm_shuffle_epi8(c, bc));
            for (k = 0; k < 3; ++k) {
                _mm256_storeu_ps(rgb + k * w + j,
                                 _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(plane[k])));
                _mm256_storeu_ps(rgb + k * w + j + 8, _mm256_cvtepi32_ps(
                                     _mm256_cvtepu8_epi32(_mm_srli_si128(plane[k], 8))));
            }
        }
        return j;
    }
    /* 16 floats rounded half up and saturated as _round_u8 (max and min keep its NaN
       and signed-zero results: they return the second operand), as bytes */
    static inline __m128i cnnkit_round16_u8(const float* v) {
        const __m256 half = _mm256_set1_ps(0.5f), zero = _mm256_setzero_ps();
        const __m256 top = _mm256_set1_ps(255.0f);
        __m256 lo = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(_mm256_loadu_ps(v), half), zero), top);
        __m256 hi = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(_mm256_loadu_ps(v + 8), half), zero),
                                  top);
        __m256i words = _mm256_permute4x64_epi64(
            _mm256_packus_epi32(_mm256_cvttps_epi32(lo), _mm256_cvttps_epi32(hi)), 0xD8);
        return _mm_packus_epi16(_mm256_castsi256_si128(words), _mm256_extracti128_si256(words, 1));
    }
    /* the inverse: planar float rows rounded to interleaved RGB bytes, 16 pixels a step */
    static inline ptrdiff_t cnnkit_planes_rgb_u8(const float* rgb, unsigned char* d, ptrdiff_t w) {
        const __m128i ora = _mm_setr_epi8(0, -128, -128, 1, -128, -128, 2, -128, -128, 3, -128,
                                          -128, 4, -128, -128, 5);
        const __m128i oga = _mm_setr_epi8(-128, 0, -128, -128, 1, -128, -128, 2, -128, -128, 3,
                                          -128, -128, 4, -128, -128);
        const __m128i oba = _mm_setr_epi8(-128, -128, 0, -128, -128, 1, -128, -128, 2, -128,
                                          -128, 3, -128, -128, 4, -128);
        const __m128i orb = _mm_setr_epi8(-128, -128, 6, -128, -128, 7, -128, -128, 8, -128,
                                          -128, 9, -128, -128, 10, -128);
        const __m128i ogb = _mm_setr_epi8(5, -128, -128, 6, -128, -128, 7, -128, -128, 8, -128,
                                          -128, 9, -128, -128, 10);
        const __m128i obb = _mm_setr_epi8(-128, 5, -128, -128, 6, -128, -128, 7, -128, -128, 8,
                                          -128, -128, 9, -128, -128);
        const __m128i orc = _mm_setr_epi8(-128, 11, -128, -128, 12, -128, -128, 13, -128, -128,
                                          14, -128, -128, 15, -128, -128);
        const __m128i ogc = _mm_setr_epi8(-128, -128, 11, -128, -128, 12, -128, -128, 13, -128,
                                          -128, 14, -128, -128, 15, -128);
        const __m128i obc = _mm_setr_epi8(10, -128, -128, 11, -128, -128, 12, -128, -128, 13,
                                          -128, -128, 14, -128, -128, 15);
        ptrdiff_t j;
        for (j = 0; j + 16 <= w; j += 16) {
            const __m128i r = cnnkit_round16_u8(rgb + j);
            const __m128i g = cnnkit_round16_u8(rgb + w + j);
            const __m128i b = cnnkit_round16_u8(rgb + 2 * w + j);
            _mm_storeu_si128((__m128i*)(d + 3 * j), _mm_or_si128(_mm_or_si128(
                _mm_shuffle_epi8(r, ora), _mm_shuffle_epi8(g, oga)), _mm_shuffle_epi8(b, oba)));
            _mm_storeu_si128((__m128i*)(d + 3 * j + 16), _mm_or_si128(_mm_or_si128(
                _mm_shuffle_epi8(r, orb), _mm_shuffle_epi8(g, ogb)), _mm_shuffle_epi8(b, obb)));
            _mm_storeu_si128((__m128i*)(d + 3 * j + 32), _mm_or_si128(_mm_or_si128(
                _mm_shuffle_epi8(r, orc), _mm_shuffle_epi8(g, ogc)), _mm_shuffle_epi8(b, obc)));
        }
        return j;
    }
    #else
    static inline ptrdiff_t cnnkit_rgb_planes_u8(const unsigned char* s, float* rgb,
                                                 ptrdiff_t w) {
        (void)s; (void)rgb; (void)w;
        return 0;
    }
    static inline ptrdiff_t cnnkit_planes_rgb_u8(const float* rgb, unsigned char* d, ptrdiff_t w) {
        (void)rgb; (void)d; (void)w;
        return 0;
    }
    #endif
    """
    Py_ssize_t cnnkit_rgb_planes_u8(const unsigned char* s, float* rgb, Py_ssize_t w) noexcept nogil
    Py_ssize_t cnnkit_planes_rgb_u8(const float* rgb, unsigned char* d, Py_ssize_t w) noexcept nogil


cdef inline void _load_rgb(const pixel* s, float* rgb, unsigned char* planes,
                           Py_ssize_t w) noexcept nogil:
    """Interleaved pixels to the planar float rows ``rgb`` (R, G, B, each ``w``): the
    colour loops then run over contiguous arrays, which the compiler vectorises (it
    does not vectorise stride-3 channel access on the baseline ISA). uint8 pixels
    are split into byte planes first (``planes``, ``3 w`` bytes), so that the
    conversion to float is one vector loop and not a scalar conversion per value."""
    cdef Py_ssize_t j, k, done = 0
    if pixel is not float:
        done = cnnkit_rgb_planes_u8(s, rgb, w)
        if done == w:
            return
    for j in range(w):
        if pixel is float:
            rgb[j] = s[3 * j]
            rgb[w + j] = s[3 * j + 1]
            rgb[2 * w + j] = s[3 * j + 2]
        else:
            planes[j] = s[3 * j]
            planes[w + j] = s[3 * j + 1]
            planes[2 * w + j] = s[3 * j + 2]
    if pixel is not float:
        for k in range(3):
            for j in range(done, w):
                rgb[k * w + j] = planes[k * w + j]


cdef inline void _store_rgb(const float* rgb, unsigned char* planes, pixel* d,
                            Py_ssize_t w) noexcept nogil:
    """The inverse of _load_rgb (uint8: rounded and saturated in one vector loop
    into ``planes``, then interleaved)."""
    cdef Py_ssize_t j, k, done = 0
    if pixel is not float:
        done = cnnkit_planes_rgb_u8(rgb, d, w)
        if done == w:
            return
        for k in range(3 * w):
            planes[k] = _round_u8(rgb[k])
    for j in range(done, w):
        if pixel is float:
            d[3 * j] = rgb[j]
            d[3 * j + 1] = rgb[w + j]
            d[3 * j + 2] = rgb[2 * w + j]
        else:
            d[3 * j] = planes[j]
            d[3 * j + 1] = planes[w + j]
            d[3 * j + 2] = planes[2 * w + j]


cdef inline float _hue_sixths(float rr, float gg, float bb, float mx, float d) noexcept nogil:
    """The hue of a pixel in sixths of a turn, in [0, 6), from its channels, their
    maximum ``mx`` and ``d`` = max - min (0 for a grey pixel). Branch-free: the
    sector is chosen by selects between values already computed, which the
    compiler turns into vector blends (a conditional expression that computes
    would be a branch under the default trapping-math rules)."""
    # float locals, not literals (double in C): the loop stays in float32
    cdef float zero = 0.0, one = 1.0, two = 2.0, four = 4.0, six = 6.0
    cdef float u = d if d > zero else one
    cdef float inv = one / u
    cdef float hr = (gg - bb) * inv
    cdef float hg = hr + six
    cdef float hb
    hr = hg if hr < zero else hr
    hg = (bb - rr) * inv + two
    hb = (rr - gg) * inv + four
    hg = hg if mx == gg else hb
    return hr if mx == rr else hg


cdef inline float _turn(float h, float dh6) noexcept nogil:
    """Hue ``h`` turned by ``dh6``, both in [0, 6), back into [0, 6)."""
    cdef float six = 6.0
    cdef float u
    h = h + dh6
    u = h - six
    return u if h >= six else h


cdef inline void _put_hue(float h, float low, float span, float* r, float* g,
                          float* b) noexcept nogil:
    """The pixel of hue ``h`` (sixths of a turn, [0, 6)) whose channels run from
    ``low`` to ``low + span``: ``low + span P`` with the pure hue
    ``P = clamp(|h - 3| - 1, 2 - |h - 2|, 2 - |h - 4|)`` clamped to [0, 1], the
    closed form of the sector table."""
    cdef float one = 1.0, two = 2.0, three = 3.0, four = 4.0
    r[0] = low + span * _clamp(fabsf(h - three) - one, one)
    g[0] = low + span * _clamp(two - fabsf(h - two), one)
    b[0] = low + span * _clamp(two - fabsf(h - four), one)


cdef inline void _hsv_row(float* r, float* g, float* b, Py_ssize_t w, float dh6, float ds,
                          float dv, float top) noexcept nogil:
    """Planar RGB rows (0..top) shifted in HSV: hue by ``dh6`` sixths of a turn
    (``0 <= dh6 < 6``), saturation by ``ds`` (clipped to [0, 1]), value by ``dv``
    (clipped to [0, top]). Branch-free, so that the loop vectorises."""
    cdef Py_ssize_t j
    cdef float rr, gg, bb, mx, mn, d, h, s, v, vs, u
    cdef float zero = 0.0, one = 1.0
    for j in range(w):
        rr = r[j]
        gg = g[j]
        bb = b[j]
        mx = rr if rr > gg else gg
        mx = mx if mx > bb else bb
        mn = rr if rr < gg else gg
        mn = mn if mn < bb else bb
        d = mx - mn
        h = _hue_sixths(rr, gg, bb, mx, d)
        h = zero if d <= zero else h
        u = mx if mx > zero else one
        s = d / u
        s = s if mx > zero else zero
        s = _clamp(s + ds, one)
        v = _clamp(mx + dv, top)
        vs = v * s
        _put_hue(_turn(h, dh6), v - vs, vs, r + j, g + j, b + j)


cdef inline void _hue_row(float* r, float* g, float* b, Py_ssize_t w,
                          float dh6) noexcept nogil:
    """_hsv_row with saturation and value unchanged: a turn of the hue keeps each
    pixel's max and min, so the new channels are ``min + (max - min) P`` without
    the saturation's division (ColorJitter's hue step)."""
    cdef Py_ssize_t j
    cdef float rr, gg, bb, mx, mn
    for j in range(w):
        rr = r[j]
        gg = g[j]
        bb = b[j]
        mx = rr if rr > gg else gg
        mx = mx if mx > bb else bb
        mn = rr if rr < gg else gg
        mn = mn if mn < bb else bb
        _put_hue(_turn(_hue_sixths(rr, gg, bb, mx, mx - mn), dh6), mn, mx - mn, r + j, g + j,
                 b + j)


def hsv_shift(const pixel[:, :, :, ::1] src, pixel[:, :, :, ::1] dst, const float[::1] hue,
              const float[::1] saturation, const float[::1] value, float max_value,
              float[:, ::1] scratch, int threads):
    """Shift hue, saturation and value of RGB images: ``hue[n]`` in sixths of a turn
    (``[0, 6)``), ``saturation[n]`` in [0, 1] units, ``value[n]`` in pixel units
    (``max_value`` is full scale); saturation and value are clipped.

    float32 throughout (the reference is float64): uint8 results are within 1
    of it where the rounding differs. ``scratch`` is ``(threads, 4 W)``.
    """
    cdef Py_ssize_t n_img = dst.shape[0], h = dst.shape[1], w = dst.shape[2]
    cdef Py_ssize_t task, n, i
    cdef float* r
    # dynamic chunks: a thread that the OS deschedules holds up 16 rows, not half the batch
    for task in prange(n_img * h, nogil=True, num_threads=threads, schedule="dynamic",
                       chunksize=16):
        n = task // h
        i = task % h
        r = &scratch[threadid(), 0]
        _load_rgb(&src[n, i, 0, 0], r, <unsigned char*>(r + 3 * w), w)
        _hsv_row(r, r + w, r + 2 * w, w, hue[n], saturation[n], value[n], max_value)
        _store_rgb(r, <unsigned char*>(r + 3 * w), &dst[n, i, 0, 0], w)


cdef inline float _sixths_of(double degrees) noexcept nogil:
    """cnnkit.augment's ``_sixths(degrees / 60.0)`` for one value: NumPy's float64
    remainder (fmod moved into ``[0, 6)``, a zero +0.0) rounded to float32, where
    6.0 is 0."""
    cdef double m = fmod(degrees / 60.0, 6.0)
    cdef float f
    if m != 0.0:
        if m < 0.0:
            m = m + 6.0
    else:
        m = 0.0
    f = <float>m
    return 0.0 if f >= 6.0 else f


def hsv_shift_draws(const pixel[:, :, :, ::1] src, pixel[:, :, :, ::1] dst,
                    const double[:, ::1] draws, double max_value, unsigned char[::1] scratch,
                    int threads):
    """``hsv_shift`` by HueSaturationValue's draws ``(N, 3)`` (hue degrees, saturation and
    value in 0-255 units), made into its arguments as ``functional.hsv_shift`` makes
    them (hue ``_sixths(h / 60)``, ``s / 255`` and ``v / 255 * max_value`` rounded to
    float32), and each thread's rows in its part of ``scratch``
    (``thread_parts_size(16 W, threads)`` bytes): the transform's batch path in one
    call, whose dozen NumPy operations before the kernel were most of its serial part.
    False (``dst`` unwritten) where a hue is not finite (``hsv_shift`` raises there)."""
    cdef Py_ssize_t n_img = dst.shape[0], h = dst.shape[1], w = dst.shape[2]
    cdef Py_ssize_t task, n, i
    cdef float* r
    if scratch.shape[0] < thread_parts_size(16 * w, threads):
        raise ValueError("hsv_shift_draws(): scratch must hold thread_parts_size(16 W, threads)")
    for n in range(n_img):
        if not isfinite(draws[n, 0]):
            return False
    if n_img * h * w == 0:
        return True
    for task in prange(n_img * h, nogil=True, num_threads=threads, schedule="dynamic",
                       chunksize=16):
        n = task // h
        i = task % h
        r = <float*>_thread_part(&scratch[0], 16 * w, threadid())
        _load_rgb(&src[n, i, 0, 0], r, <unsigned char*>(r + 3 * w), w)
        _hsv_row(r, r + w, r + 2 * w, w, _sixths_of(draws[n, 0]), <float>(draws[n, 1] / 255.0),
                 <float>(draws[n, 2] / 255.0 * max_value), <float>max_value)
        _store_rgb(r, <unsigned char*>(r + 3 * w), &dst[n, i, 0, 0], w)
    return True


# ColorJitter's steps, numbered as in the ``order`` rows of colour_jitter
cdef enum:
    JITTER_BRIGHTNESS = 0
    JITTER_CONTRAST = 1
    JITTER_SATURATION = 2
    JITTER_HUE = 3

cdef enum:
    JITTER_BAND = 16  # rows per task of colour_jitter

# torchvision's grey (ITU-R 601 luma)
cdef float GREY_R = 0.2989
cdef float GREY_G = 0.587
cdef float GREY_B = 0.114


cdef inline void _jitter_step(int step, float* r, float* g, float* b, Py_ssize_t w,
                              const float* factor, float mean, float top) noexcept nogil:
    """One ColorJitter step on planar rows, clipped to [0, top] as torchvision does."""
    cdef Py_ssize_t j
    cdef float f = factor[step], base, grey
    cdef float wr = GREY_R, wg = GREY_G, wb = GREY_B  # locals: no reload after each store
    if f == (0.0 if step == JITTER_HUE else 1.0):
        return  # the identity: skipped, so that it is exact (and free)
    if step == JITTER_BRIGHTNESS:
        for j in range(w):
            r[j] = _clamp(r[j] * f, top)
            g[j] = _clamp(g[j] * f, top)
            b[j] = _clamp(b[j] * f, top)
    elif step == JITTER_CONTRAST:
        base = (1.0 - f) * mean
        for j in range(w):
            r[j] = _clamp(r[j] * f + base, top)
            g[j] = _clamp(g[j] * f + base, top)
            b[j] = _clamp(b[j] * f + base, top)
    elif step == JITTER_SATURATION:
        for j in range(w):
            grey = (1.0 - f) * (wr * r[j] + wg * g[j] + wb * b[j])
            r[j] = _clamp(r[j] * f + grey, top)
            g[j] = _clamp(g[j] * f + grey, top)
            b[j] = _clamp(b[j] * f + grey, top)
    else:
        _hue_row(r, g, b, w, f)


cdef inline void _clamp_row(float* values, Py_ssize_t n, float top) noexcept nogil:
    cdef Py_ssize_t k
    for k in range(n):
        values[k] = _clamp(values[k], top)


cdef inline double _grey_sum(const float* r, const float* g, const float* b,
                             Py_ssize_t w) noexcept nogil:
    """The sum of a row's grey, in 8 float32 lanes (a vector's worth of independent
    sums; one sequential sum would wait on each addition) added in a fixed order."""
    cdef float lanes[8]
    cdef float wr = GREY_R, wg = GREY_G, wb = GREY_B
    cdef Py_ssize_t j, l, body = w - w % 8
    cdef double total = 0.0
    for l in range(8):
        lanes[l] = 0.0
    for j in range(0, body, 8):
        for l in range(8):
            lanes[l] = lanes[l] + (wr * r[j + l] + wg * g[j + l] + wb * b[j + l])
    for j in range(body, w):
        total = total + (wr * r[j] + wg * g[j] + wb * b[j])
    for l in range(8):
        total = total + lanes[l]
    return total


def colour_jitter(const pixel[:, :, :, ::1] src, pixel[:, :, :, ::1] dst,
                  const float[:, ::1] factors, const int[:, ::1] order,
                  float[:, ::1] scratch, double[::1] row_sums, float max_value, int threads):
    """torchvision's ColorJitter on RGB images, each with its own factors and order.

    ``factors[n]`` = (brightness, contrast, saturation, hue in sixths of a turn in
    [0, 6)); ``order[n]`` is a permutation of the steps (JITTER_*). Contrast
    blends with the mean grey of the image as it is when contrast comes, so a
    first pass applies the steps before it to each row and sums the row's grey
    (``row_sums``, ``N H``), and the second adds an image's row sums in row order
    and applies all four steps. Both passes run over bands of ``JITTER_BAND`` rows
    taken by whichever thread is free: images cost more or less by their order (a
    hue before contrast doubles the first pass), so whole images on two threads
    left one waiting. The grey is summed in a fixed order, so the result does not
    depend on the thread count. float32 images are clipped to [0, 1] first (uint8
    ones are in range). Values stay float32 between steps and are rounded once at
    the end. ``scratch`` is ``(threads, 4 W)``.
    """
    cdef Py_ssize_t n_img = dst.shape[0], h = dst.shape[1], w = dst.shape[2]
    cdef Py_ssize_t bands = (h + JITTER_BAND - 1) // JITTER_BAND
    cdef Py_ssize_t task, n, i, i0, i1
    cdef int k
    cdef double total
    cdef float mean
    cdef float* r
    for task in prange(n_img * bands, nogil=True, num_threads=threads, schedule="dynamic"):
        n = task // bands
        if factors[n, JITTER_CONTRAST] == 1.0:
            continue  # the mean is not used
        i0 = (task % bands) * JITTER_BAND
        i1 = min(i0 + JITTER_BAND, h)
        r = &scratch[threadid(), 0]
        for i in range(i0, i1):
            _load_rgb(&src[n, i, 0, 0], r, <unsigned char*>(r + 3 * w), w)
            if pixel is float:
                _clamp_row(r, 3 * w, max_value)
            k = 0
            while k < 4 and order[n, k] != JITTER_CONTRAST:
                _jitter_step(order[n, k], r, r + w, r + 2 * w, w, &factors[n, 0], 0.0, max_value)
                k = k + 1
            row_sums[n * h + i] = _grey_sum(r, r + w, r + 2 * w, w)
    for task in prange(n_img * bands, nogil=True, num_threads=threads, schedule="dynamic"):
        n = task // bands
        i0 = (task % bands) * JITTER_BAND
        i1 = min(i0 + JITTER_BAND, h)
        mean = 0.0
        if factors[n, JITTER_CONTRAST] != 1.0:
            total = 0.0
            for i in range(h):
                total = total + row_sums[n * h + i]
            mean = <float>(total / (h * w))
        r = &scratch[threadid(), 0]
        for i in range(i0, i1):
            _load_rgb(&src[n, i, 0, 0], r, <unsigned char*>(r + 3 * w), w)
            if pixel is float:
                _clamp_row(r, 3 * w, max_value)
            for k in range(4):
                _jitter_step(order[n, k], r, r + w, r + 2 * w, w, &factors[n, 0], mean, max_value)
            _store_rgb(r, <unsigned char*>(r + 3 * w), &dst[n, i, 0, 0], w)


cdef inline unsigned int _hashmix(unsigned int value, unsigned int* hc) noexcept nogil:
    value = value ^ hc[0]
    hc[0] = hc[0] * <unsigned int>0x931E8875
    value = value * hc[0]
    return value ^ (value >> 16)


cdef inline void _seed_pool(unsigned long long seed, unsigned int* pool) noexcept nogil:
    """The 4-word pool of ``SeedSequence(seed)`` for a seed below 2**64: NumPy's hashing
    (Melissa O'Neill's seed_seq) of the seed's two 32-bit words, low first, padded
    with zeros."""
    cdef Py_ssize_t k, src, dst
    cdef unsigned int hc, value
    pool[0] = <unsigned int>(seed & 0xFFFFFFFFULL)
    pool[1] = <unsigned int>(seed >> 32)
    pool[2] = 0
    pool[3] = 0
    hc = <unsigned int>0x43B0D7E5
    for k in range(4):
        pool[k] = _hashmix(pool[k], &hc)
    for src in range(4):
        for dst in range(4):
            if src != dst:
                value = _hashmix(pool[src], &hc)
                value = <unsigned int>0xCA01F9DD * pool[dst] - <unsigned int>0x4973F715 * value
                pool[dst] = value ^ (value >> 16)


cdef inline void _generate_state(const unsigned int* pool, unsigned long long* out,
                                 Py_ssize_t count) noexcept nogil:
    """``SeedSequence.generate_state(count, np.uint64)`` from its pool: 32-bit words made
    in turn, two to each output, low first."""
    cdef Py_ssize_t n
    cdef unsigned int hc = _STATE_HASH
    for n in range(count):
        out[n] = _state_output(pool, n, &hc)


cdef unsigned int _STATE_HASH = <unsigned int>0x8B51F9DD  # generate_state's first hash constant


cdef inline unsigned long long _state_output(const unsigned int* pool, Py_ssize_t n,
                                             unsigned int* hc) noexcept nogil:
    """Output ``n`` of ``_generate_state``, the outputs made in turn from ``hc =
    _STATE_HASH`` (``hc`` carries the hash constant from one to the next)."""
    cdef Py_ssize_t k
    cdef unsigned int value = 0, low = 0
    for k in range(2 * n, 2 * n + 2):
        value = pool[k % 4] ^ hc[0]
        hc[0] = hc[0] * <unsigned int>0x58F38DED
        value = value * hc[0]
        value = value ^ (value >> 16)
        if k % 2 == 0:
            low = value
    return low | (<unsigned long long>value << 32)


def seed_states(const unsigned long long[::1] seeds, unsigned long long[:, ::1] out):
    """``out[n] = SeedSequence(seeds[n]).generate_state(4, np.uint64)`` (the state that
    ``default_rng(seeds[n])`` seeds its PCG64 with), for seeds below 2**64, without
    building an object per seed. Used by cnnkit._random.seeded_generators."""
    cdef Py_ssize_t n
    cdef unsigned int pool[4]
    for n in range(seeds.shape[0]):
        _seed_pool(seeds[n], pool)
        _generate_state(pool, &out[n, 0], 4)


def seed_sequence_state(unsigned long long seed, unsigned long long[::1] out):
    """``out[:] = SeedSequence(seed).generate_state(len(out), np.uint64)`` for a seed below
    2**64: the per-image seeds of a batch (``cnnkit.augment.image_seeds``) without
    NumPy's Python-level SeedSequence (about 8 us a call)."""
    cdef unsigned int pool[4]
    if out.shape[0] == 0:
        return
    _seed_pool(seed, pool)
    _generate_state(pool, &out[0], out.shape[0])
