"""§3.3 local response normalisation: b_i = a_i / (k + alpha_per_term * sum_j a_j^2)^beta over
the `size` maps around i, within each of `groups` blocks of maps (cuda-convnet's window,
clipped at the ends: the maps beyond a block's edge count as zeros).

Formulations of the same function:
- `lrn_reference`: torch operations (squares, a zero-padded shifted sum, pow), differentiated
  by autograd. Used on CUDA, where inductor fuses it into one kernel, under torch.compile,
  and as the tests' and the benchmark's reference.
- `lrn_avg_pool`: the window sum as an average pool, as nn.LocalResponseNorm has it (a
  GPU form: bench/step_variants.py times it against the reference).
- `CpuLrn`: on the CPU, one pass forward and one backward per row of channels (the
  channels_last layout the model runs in puts a position's maps side by side), compiled by
  numba, fp32 inside whatever the input's dtype, the backward written out. Measured on this
  project's 2-core CPU (batch 32, bf16 autocast, bench/train_throughput.py): the reference's
  ~15 elementwise passes over conv1's 37 MB of activations and their autograd graph took
  more time than all the convolutions together.
All keep the sum of squares and the power in fp32 (at least): in bf16 the alpha * sum term
(~2e-5 x a sum of squares) would lose most of its digits against k = 2.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import torch
import torch.nn.functional as F

# Rows of channels per task handed to a thread: enough to amortise the call, few enough
# that 2 threads split conv1's 96,800 rows (batch 32) evenly.
ROWS_PER_TASK = 2048


def lrn_reference(x: torch.Tensor, alpha_per_term: float, groups: int, size: int, k: float,
                  beta: float) -> torch.Tensor:
    xf = x.to(torch.promote_types(x.dtype, torch.float32))
    b, c, h, w = xf.shape
    per_group = c // groups
    sq = xf.square().reshape(b, groups, per_group, h, w)
    half = size // 2
    padded = F.pad(sq, (0, 0, 0, 0, half, size - 1 - half))  # zero maps at each group's ends
    window = sum(padded[:, :, j:j + per_group] for j in range(size)).reshape(b, c, h, w)
    return (xf / (k + alpha_per_term * window).pow(beta)).to(x.dtype)


def lrn_avg_pool(x: torch.Tensor, alpha_per_term: float, groups: int, size: int, k: float,
                 beta: float) -> torch.Tensor:
    """`lrn_reference`'s function with the window sum as an average pool over the squared maps
    (times `size`), as nn.LocalResponseNorm computes it, within each group: equal to fp32
    rounding. A form for GPUs, where a pooling kernel may beat the shifted sum's slices."""
    xf = x.to(torch.promote_types(x.dtype, torch.float32))
    b, c, h, w = xf.shape
    half = size // 2
    sq = xf.square().reshape(b * groups, 1, c // groups, h, w)
    padded = F.pad(sq, (0, 0, 0, 0, half, size - 1 - half))
    window = F.avg_pool3d(padded, (size, 1, 1), stride=1).reshape(b, c, h, w) * size
    return (xf / (k + alpha_per_term * window).pow(beta)).to(x.dtype)


@numba.njit(inline="always", error_model="numpy")
def _bf16_to_f32(bits):  # pragma: no cover (compiled)
    return np.uint32(bits) << np.uint32(16)


@numba.njit(inline="always", error_model="numpy")
def _f32_to_bf16(bits):  # pragma: no cover (compiled): round to nearest even, as torch's .to(bfloat16)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    quiet_nan = (bits >> np.uint32(16)) | np.uint32(0x40)  # a NaN stays a NaN (branch-free: vectorises)
    return np.uint16(quiet_nan if (bits & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000) else rounded)


@numba.njit(inline="always", error_model="numpy")
def _load(src, dst_bits, bf16):  # pragma: no cover (compiled)
    """dst_bits[:src.size] = fp32 bits of src: a block of rows, sliced from the 2-D array and
    raveled. Flat arrays indexed at an offset instead cost the kernels a third more
    (docs/performance.md, "Training and evaluation at this CPU's limit")."""
    if bf16:
        for m in range(src.size):
            dst_bits[m] = _bf16_to_f32(src[m])
    else:
        for m in range(src.size):
            dst_bits[m] = src[m]


@numba.njit(inline="always", error_model="numpy")
def _store(src_bits, dst, bf16):  # pragma: no cover (compiled)
    if bf16:
        for m in range(dst.size):
            dst[m] = _f32_to_bf16(src_bits[m])
    else:
        for m in range(dst.size):
            dst[m] = src_bits[m]


@numba.njit(inline="always", error_model="numpy")
def _window_sums(padded, out, length, per, size, edges):  # pragma: no cover (compiled)
    """out[m] = sum of v[m - r .. m - r + size - 1] within m's group of `per` maps, where
    padded[r + m] = v[m] for a block of whole rows (length = rows x channels) and r is the
    window's reach back, added in the reference's order (the window's first map first). The
    flat sum runs over the block in long vectorised loops; the few elements whose window
    crosses a group's edge (`edges`, from _edge_windows with the same r) are then summed again
    over their own group's maps only (cuda-convnet's clipped window)."""
    if size == 5:  # §3.3's n: one pass
        for m in range(length):
            out[m] = padded[m] + padded[m + 1] + padded[m + 2] + padded[m + 3] + padded[m + 4]
    else:
        for m in range(length):
            out[m] = padded[m]
        for j in range(1, size):
            for m in range(length):
                out[m] += padded[m + j]
    for base in range(0, length, per):
        for e in range(edges.shape[0]):
            i, first, stop = edges[e, 0], edges[e, 1], edges[e, 2]
            s = np.float32(0)
            for j in range(first, stop):
                s += padded[base + i + j]
            out[base + i] = s


@numba.njit(inline="always", error_model="numpy")
def _edge_windows(per, size, reach_back):  # pragma: no cover (compiled)
    """(i, first j, stop j) for each map i of a group (`per` maps) whose window crosses the
    group's edge: padded[base + i + j] for j in [first, stop) are its window's maps in the group."""
    reach_forward = size - 1 - reach_back
    edge = [i for i in range(per) if i < reach_back or i >= per - reach_forward]
    rows = np.empty((len(edge), 3), np.int64)
    for e, i in enumerate(edge):
        rows[e, 0] = i
        rows[e, 1] = max(0, reach_back - i)
        rows[e, 2] = min(size, per + reach_back - i)
    return rows


@numba.njit(inline="always", error_model="numpy")
def _scales(xf, padded, d, scale, length, per, size, edges, k, alpha, beta):  # pragma: no cover (compiled)
    """d = k + alpha * (window sum of squares), scale = d^-beta, over a block of rows."""
    before = size // 2
    for m in range(length):
        padded[before + m] = xf[m] * xf[m]
    _window_sums(padded, d, length, per, size, edges)
    if beta == 0.75:  # the paper's: d^-0.75 = r * sqrt(r), r = 1/sqrt(d): vector instructions only
        for m in range(length):
            dm = np.float32(k) + np.float32(alpha) * d[m]
            d[m] = dm
            r = np.float32(1) / np.sqrt(dm)
            scale[m] = r * np.sqrt(r)
    else:
        for m in range(length):
            dm = np.float32(k) + np.float32(alpha) * d[m]
            d[m] = dm
            scale[m] = dm ** np.float32(-beta)


BLOCK_ROWS = 32  # rows per inner block: its ~8 fp32 scratch arrays stay in L2 (~100 KB at 96 maps)


@numba.njit(nogil=True, boundscheck=False, error_model="numpy", cache=True)
def _forward_rows(x, y, start, stop, groups, size, k, alpha, beta, bf16):  # pragma: no cover (compiled)
    """Rows start..stop of x (rows, channels) normalised into y."""
    c = x.shape[1]
    n = BLOCK_ROWS * c
    bits = np.empty(n, np.uint32)
    xf = bits.view(np.float32)
    padded = np.zeros(n + size - 1, np.float32)
    d = np.empty(n, np.float32)
    scale = np.empty(n, np.float32)
    out_bits = np.empty(n, np.uint32)
    out = out_bits.view(np.float32)
    per = c // groups
    edges = _edge_windows(per, size, size // 2)
    for r0 in range(start, stop, BLOCK_ROWS):
        r1 = min(stop, r0 + BLOCK_ROWS)
        length = (r1 - r0) * c
        _load(x[r0:r1].ravel(), bits, bf16)
        _scales(xf, padded, d, scale, length, per, size, edges, k, alpha, beta)
        for m in range(length):
            out[m] = xf[m] * scale[m]
        _store(out_bits, y[r0:r1].ravel(), bf16)


@numba.njit(nogil=True, boundscheck=False, error_model="numpy", cache=True)
def _backward_rows(x, grad, dx, start, stop, groups, size, k, alpha, beta, bf16):  # pragma: no cover (compiled)
    """dL/dx_j = g_j d_j^-beta - 2 alpha beta x_j sum_{i: j in window(i)} g_i x_i d_i^(-beta-1)."""
    c = x.shape[1]
    n = BLOCK_ROWS * c
    after = size - 1 - size // 2  # the transposed window reaches `after` maps back
    bits = np.empty(n, np.uint32)
    xf = bits.view(np.float32)
    gbits = np.empty(n, np.uint32)
    gf = gbits.view(np.float32)
    padded = np.zeros(n + size - 1, np.float32)
    padded_t = np.zeros(n + size - 1, np.float32)
    d = np.empty(n, np.float32)
    scale = np.empty(n, np.float32)
    out_bits = np.empty(n, np.uint32)
    out = out_bits.view(np.float32)
    factor = np.float32(2 * alpha * beta)
    per = c // groups
    edges, edges_t = _edge_windows(per, size, size // 2), _edge_windows(per, size, after)
    for r0 in range(start, stop, BLOCK_ROWS):
        r1 = min(stop, r0 + BLOCK_ROWS)
        length = (r1 - r0) * c
        _load(x[r0:r1].ravel(), bits, bf16)
        _load(grad[r0:r1].ravel(), gbits, bf16)
        _scales(xf, padded, d, scale, length, per, size, edges, k, alpha, beta)
        for m in range(length):
            padded_t[after + m] = gf[m] * xf[m] * scale[m] / d[m]
        _window_sums(padded_t, out, length, per, size, edges_t)
        for m in range(length):
            out[m] = gf[m] * scale[m] - factor * xf[m] * out[m]
        _store(out_bits, dx[r0:r1].ravel(), bf16)


_pool: ThreadPoolExecutor | None = None


def _run_rows(kernel, arrays: tuple, params: tuple) -> None:
    """`kernel(*arrays, start, stop, *params)` over every row of the (rows, channels) arrays,
    split between as many threads as torch's intra-op pool (the kernels release the GIL)."""
    global _pool
    rows = arrays[0].shape[0]
    threads = max(1, torch.get_num_threads())
    tasks = [(s, min(rows, s + ROWS_PER_TASK)) for s in range(0, rows, ROWS_PER_TASK)]
    if threads == 1 or len(tasks) == 1:
        for start, stop in tasks:
            kernel(*arrays, start, stop, *params)
        return
    if _pool is None or _pool._max_workers != threads:
        _pool = ThreadPoolExecutor(threads, thread_name_prefix="lrn")
    list(_pool.map(lambda task: kernel(*arrays, task[0], task[1], *params), tasks))


def _rows(t: torch.Tensor) -> np.ndarray:
    """A (B, C, H, W) tensor's (B*H*W, C) channels_last rows as the numpy array of their raw
    bits that numba reads (uint16 for bf16, uint32 for fp32); a view where `t` is already
    channels_last."""
    b, c, h, w = t.shape
    rows = t.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1).reshape(b * h * w, c)
    bits = rows.view(torch.uint16 if t.dtype == torch.bfloat16 else torch.uint32)
    return bits.numpy()


def _empty_rows(t: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
    out = torch.empty_like(t, memory_format=torch.channels_last)
    return out, _rows(out)


class CpuLrn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, alpha_per_term: float, groups: int, size: int, k: float, beta: float):
        params = (groups, size, k, alpha_per_term, beta, x.dtype == torch.bfloat16)
        xa = _rows(x)
        y, ya = _empty_rows(x)
        _run_rows(_forward_rows, (xa, ya), params)
        ctx.save_for_backward(x)
        ctx.params = params
        return y

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        xa, ga = _rows(x), _rows(grad.to(x.dtype))
        dx, dxa = _empty_rows(x)
        _run_rows(_backward_rows, (xa, ga, dxa), ctx.params)
        return dx, None, None, None, None, None


CPU_DTYPES = (torch.float32, torch.bfloat16)


def local_response_norm(x: torch.Tensor, alpha_per_term: float, groups: int, size: int, k: float,
                        beta: float) -> torch.Tensor:
    """The CPU kernels for fp32/bf16 CPU tensors in eager mode, the reference elsewhere."""
    if x.device.type == "cpu" and x.dtype in CPU_DTYPES and not torch.compiler.is_compiling():
        return CpuLrn.apply(x, alpha_per_term, groups, size, k, beta)
    return lrn_reference(x, alpha_per_term, groups, size, k, beta)
