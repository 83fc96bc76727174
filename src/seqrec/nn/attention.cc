// Jagged causal softmax attention: per (sequence, head) blocks, fused softmax + dropout.
#include "seqrec/nn/attention.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "seqrec/common/random.h"
#include "seqrec/nn/cpu_kernels.h"
#include "seqrec/nn/dropout.h"

namespace seqrec::nn {
namespace {

// Where row i of (sequence b, head h) starts: in a [B, H, W, d] tensor (padded), or in packed rows
// [T, H, d] where sequence b's rows begin at row seq_row0[b]. The last dim is dense either way.
struct RowLayout {
  float* base = nullptr;
  int64_t sb = 0, sh = 0, si = 0;
  const int64_t* seq_row0 = nullptr;  // packed: first row of each sequence (cu_seqlens)
  float* row(int64_t b, int64_t h, int64_t i) const {
    return base + (seq_row0 ? seq_row0[b] * si : b * sb) + h * sh + i * si;
  }
};

// [B, H, W, d] padded, or [T, H, d] packed with cu (cu_seqlens [B + 1]).
RowLayout layout_of(const torch::Tensor& t, const int64_t* cu = nullptr) {
  TORCH_CHECK(t.stride(-1) == 1, "attention inputs need a dense last dimension");
  if (cu) return {t.data_ptr<float>(), 0, t.stride(1), t.stride(0), cu};
  return {t.data_ptr<float>(), t.stride(0), t.stride(1), t.stride(2), nullptr};
}

// A [B, H, W, d] tensor stored as [B, W, H, d] (what the projections produce and the output
// projection consumes, so no transposing copies on either side), zero-filled.
torch::Tensor zeros_bwhd(int64_t b, int64_t h, int64_t w, int64_t d, const torch::TensorOptions& options) {
  return torch::zeros({b, w, h, d}, options).transpose(1, 2);
}

// One (sequence, head) block of a left-padded batch: l real rows starting at row off.
struct Block {
  int64_t b = 0, h = 0, l = 0, off = 0;
  int64_t probs_offset = 0;  // of its l x l probabilities in the saved buffer
};

// Blocks with l > 0, longest first (dynamic scheduling then balances the threads). Packed rows
// start at their sequence's first row (off 0); padded ones after the left padding (off W - l).
std::vector<Block> plan_blocks(const torch::Tensor& lengths, int64_t h, int64_t w, int64_t* probs_size,
                               bool packed = false) {
  std::vector<Block> blocks;
  const int64_t* len = lengths.data_ptr<int64_t>();
  for (int64_t bi = 0; bi < lengths.size(0); ++bi)
    for (int64_t hi = 0; hi < h; ++hi)
      if (len[bi] > 0) blocks.push_back({bi, hi, len[bi], packed ? 0 : w - len[bi], 0});
  std::stable_sort(blocks.begin(), blocks.end(), [](const Block& x, const Block& y) { return x.l > y.l; });
  int64_t offset = 0;
  for (auto& blk : blocks) {
    blk.probs_offset = offset;
    offset += blk.l * blk.l;
  }
  if (probs_size) *probs_size = offset;
  return blocks;
}

// Runs fn(block, scratch) for every block on the intra-op threads, each thread taking the next
// block when done (costs differ by l^2). scratch: `scratch_floats` floats per thread.
template <typename Fn>
void for_each_block(const std::vector<Block>& blocks, int64_t scratch_floats, Fn&& fn) {
  const int64_t n = static_cast<int64_t>(blocks.size());
  if (n == 0) return;
  std::atomic<int64_t> next{0};
  const int64_t threads = std::min<int64_t>(at::get_num_threads(), n);
  at::parallel_for(0, threads, 1, [&](int64_t, int64_t) {
    std::vector<float> scratch(static_cast<size_t>(scratch_floats));
    for (int64_t t; (t = next.fetch_add(1)) < n;) fn(blocks[t], scratch.data());
  });
}

// Causal blocks are computed in row tiles: tile [r0, r1) only needs columns [0, r1).
constexpr int64_t kRowTile = 64;

// Seed of the dropout stream of row i of (sequence, head) block bh (identical in both passes).
uint64_t dropout_seed(uint64_t seed, int64_t bh, int64_t i) { return derive_seed({seed, uint64_t(bh), uint64_t(i)}); }

// Padded q, k, v [B, H, W, dh], or packed [T, H, dh] with cu = cu_seqlens [B + 1] (empty when
// padded); lengths [B] either way.
struct JaggedAttention : public torch::autograd::Function<JaggedAttention> {
  // Zero-filled output / gradient in the inputs' layout ([B, W, H, dh] storage when padded).
  static torch::Tensor zeros_like_layout(const torch::Tensor& q, bool packed) {
    return packed ? torch::zeros({q.size(0), q.size(1), q.size(2)}, q.options())
                  : zeros_bwhd(q.size(0), q.size(1), q.size(2), q.size(3), q.options());
  }

  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& q_in,
                               const torch::Tensor& k_in, const torch::Tensor& v_in, const torch::Tensor& lengths,
                               const torch::Tensor& cu_in, double p, bool training) {
    auto dense = [](const torch::Tensor& t) { return t.stride(-1) == 1 ? t : t.contiguous(); };
    auto q = dense(q_in), k = dense(k_in), v = dense(v_in);
    const bool packed = cu_in.numel() > 0;
    auto cu = cu_in.contiguous();
    const int64_t h = q.size(1), dh = q.size(-1);
    const int64_t w = packed ? (lengths.numel() ? lengths.max().item<int64_t>() : 0) : q.size(2);
    const int64_t* cup = packed ? cu.data_ptr<int64_t>() : nullptr;
    const bool drop = training && p > 0;
    int64_t probs_size = 0;
    const std::vector<Block> blocks = plan_blocks(lengths, h, w, &probs_size, packed);
    auto out = zeros_like_layout(q, packed);                                 // like q
    auto probs = torch::empty({probs_size}, q.options());                    // l x l per block
    const uint64_t seed =
        drop ? static_cast<uint64_t>(torch::randint(1LL << 62, {1}, torch::kLong).item<int64_t>()) : 0;
    const RowLayout Q = layout_of(q, cup), K = layout_of(k, cup), V = layout_of(v, cup), O = layout_of(out, cup);
    float* probs_base = probs.data_ptr<float>();
    // Scratch: the dropped-out probabilities of one row tile.
    for_each_block(blocks, drop ? kRowTile * w : 0, [&](const Block& blk, float* pd) {
      const int64_t l = blk.l, bh = blk.b * h + blk.h;
      const float *qb = Q.row(blk.b, blk.h, blk.off), *kb = K.row(blk.b, blk.h, blk.off),
                  *vb = V.row(blk.b, blk.h, blk.off);
      float* ob = O.row(blk.b, blk.h, blk.off);
      float* pb = probs_base + blk.probs_offset;                              // [l, l], row stride l
      for (int64_t r0 = 0; r0 < l; r0 += kRowTile) {
        const int64_t r1 = std::min(l, r0 + kRowTile), rows = r1 - r0;
        float* pt = pb + r0 * l;
        cpu::gemm(false, true, rows, r1, dh, 1.f, qb + r0 * Q.si, Q.si, kb, K.si, 0.f, pt, l);  // S = Q K^T
        for (int64_t i = r0; i < r1; ++i) {  // causal softmax over j <= i; zeros up to the tile edge
          float* row = pb + i * l;
          cpu::softmax_row(row, i + 1);
          std::fill(row + i + 1, row + r1, 0.f);
        }
        const float* a = pt;
        if (drop) {
          for (int64_t i = r0; i < r1; ++i) {
            float* m = pd + (i - r0) * l;
            cpu::dropout_row(m, i + 1, p, dropout_seed(seed, bh, i));
            cpu::mul_row(m, pb + i * l, m, i + 1);
            std::fill(m + i + 1, m + r1, 0.f);
          }
          a = pd;
        }
        cpu::gemm(false, false, rows, dh, r1, 1.f, a, l, vb, V.si, 0.f, ob + r0 * O.si, O.si);   // O = Pd V
      }
    });
    ctx->save_for_backward({q, k, v, probs, lengths, cu});
    ctx->saved_data["drop"] = drop;
    ctx->saved_data["p"] = p;
    ctx->saved_data["seed"] = static_cast<int64_t>(seed);
    return out;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    auto s = ctx->get_saved_variables();
    const auto &q = s[0], &k = s[1], &v = s[2], &probs = s[3], &lengths = s[4], &cu = s[5];
    const bool drop = ctx->saved_data["drop"].toBool();
    const double p = ctx->saved_data["p"].toDouble();
    const uint64_t seed = static_cast<uint64_t>(ctx->saved_data["seed"].toInt());
    auto g = grads[0].stride(-1) == 1 ? grads[0] : grads[0].contiguous();  // like q
    const bool packed = cu.numel() > 0;
    const int64_t* cup = packed ? cu.data_ptr<int64_t>() : nullptr;
    const int64_t h = q.size(1), dh = q.size(-1);
    const int64_t w = packed ? (lengths.numel() ? lengths.max().item<int64_t>() : 0) : q.size(2);
    auto gq = zeros_like_layout(q, packed), gk = zeros_like_layout(q, packed), gv = zeros_like_layout(q, packed);
    const std::vector<Block> blocks = plan_blocks(lengths, h, w, nullptr, packed);
    const RowLayout Q = layout_of(q, cup), K = layout_of(k, cup), V = layout_of(v, cup), G = layout_of(g, cup),
                    GQ = layout_of(gq, cup), GK = layout_of(gk, cup), GV = layout_of(gv, cup);
    const float* probs_base = probs.data_ptr<float>();
    // Scratch per row tile: dP (then dS), and with dropout the mask and the dropped probabilities.
    const int64_t tile = kRowTile * w;
    for_each_block(blocks, (drop ? 3 : 1) * tile, [&](const Block& blk, float* scratch) {
      const int64_t l = blk.l, bh = blk.b * h + blk.h;
      float *dp = scratch, *mask = scratch + tile, *pd = scratch + 2 * tile;
      const float *qb = Q.row(blk.b, blk.h, blk.off), *kb = K.row(blk.b, blk.h, blk.off),
                  *vb = V.row(blk.b, blk.h, blk.off), *gb = G.row(blk.b, blk.h, blk.off);
      float *gqb = GQ.row(blk.b, blk.h, blk.off), *gkb = GK.row(blk.b, blk.h, blk.off),
            *gvb = GV.row(blk.b, blk.h, blk.off);
      const float* pb = probs_base + blk.probs_offset;
      for (int64_t r0 = 0; r0 < l; r0 += kRowTile) {
        const int64_t r1 = std::min(l, r0 + kRowTile), rows = r1 - r0;
        const float* a = pb + r0 * l;                                          // P tile, row stride l
        if (drop) {
          for (int64_t i = r0; i < r1; ++i) {
            float *m = mask + (i - r0) * l, *d = pd + (i - r0) * l;
            cpu::dropout_row(m, i + 1, p, dropout_seed(seed, bh, i));
            cpu::mul_row(d, pb + i * l, m, i + 1);
            std::fill(d + i + 1, d + r1, 0.f);
          }
          a = pd;
        }
        cpu::gemm(true, false, r1, dh, rows, 1.f, a, l, gb + r0 * G.si, G.si, 1.f, gvb, GV.si);     // dV += Pd^T dO
        cpu::gemm(false, true, rows, r1, dh, 1.f, gb + r0 * G.si, G.si, vb, V.si, 0.f, dp, l);      // dPd = dO V^T
        for (int64_t i = r0; i < r1; ++i) {
          float* d = dp + (i - r0) * l;
          if (drop) cpu::mul_row(d, d, mask + (i - r0) * l, i + 1);                                 // dP
          cpu::softmax_backward_row(d, pb + i * l, i + 1);                                          // dS
          std::fill(d + i + 1, d + r1, 0.f);
        }
        cpu::gemm(false, false, rows, dh, r1, 1.f, dp, l, kb, K.si, 0.f, gqb + r0 * GQ.si, GQ.si);  // dQ = dS K
        cpu::gemm(true, false, r1, dh, rows, 1.f, dp, l, qb + r0 * Q.si, Q.si, 1.f, gkb, GK.si);    // dK += dS^T Q
      }
    });
    return {gq, gk, gv, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

// The bias of a pointwise block, dense ([B, W, W]) or as tables, resolved to row pointers.
struct BiasRows {
  const float* dense = nullptr;       // [B, W, W]
  const float* position = nullptr;    // [P]
  int64_t origin = 0;
  const float* time = nullptr;        // [T]
  const uint8_t* buckets = nullptr;   // [B, W, W]
  int64_t w = 0;

  // Adds the bias of rows [r0, r0 + rows) (local indices of the block at `off` in sequence b),
  // columns [c0, r1), to the score tile s (row stride ld, column 0 at s).
  void add(int64_t b, int64_t off, int64_t r0, int64_t rows, int64_t c0, int64_t r1, float* s, int64_t ld) const {
    for (int64_t t = 0; t < rows; ++t) {
      const int64_t i = r0 + t, row = (b * w + off + i) * w + off + c0;
      float* st = s + t * ld + c0;
      if (dense) cpu::add_row(st, dense + row, r1 - c0);
      if (position || time)
        cpu::add_bias_tables_row(st, position ? position + origin - i + c0 : nullptr, time,
                                 buckets ? buckets + row : nullptr, r1 - c0);
    }
  }
};

// Pre-activation scores of one row tile of a pointwise block over columns [c0, r1):
// S[:, c0:r1] = Q_tile K[c0:r1]^T + bias (s: column 0 of the tile; columns < c0 untouched).
void pointwise_scores(const float* qt, int64_t qs, const float* kb, int64_t ks, const BiasRows& bias, int64_t b,
                      int64_t off, int64_t r0, int64_t rows, int64_t c0, int64_t r1, int64_t dqk, float* s,
                      int64_t ld) {
  cpu::gemm(false, true, rows, r1 - c0, dqk, 1.f, qt, qs, kb + c0 * ks, ks, 0.f, s + c0, ld);
  bias.add(b, off, r0, rows, c0, r1, s, ld);
}

// PerSRec's segment blocking of one sequence (attention.h, packed_pointwise_attention): the row
// ranges of the items of each segment, so that a row zeroes the columns of earlier segments' items.
struct SegmentBlocking {
  std::vector<int64_t> begin, end;  // items of segment s: local rows [begin[s], end[s]) (empty: begin == end)
  const int32_t* codes = nullptr;   // the sequence's codes, one per local row
  int64_t first_token = -1;         // local row of the first token (-1: none)

  SegmentBlocking(const int32_t* seq_codes, int64_t l) : codes(seq_codes) {
    if (!codes) return;
    for (int64_t i = 0; i < l; ++i) {
      if (codes[i] < 0 && first_token < 0) first_token = i;
      if (codes[i] < 0) continue;
      const auto s = static_cast<size_t>(codes[i]);
      if (s >= begin.size()) begin.resize(s + 1, -1), end.resize(s + 1, -1);
      if (begin[s] < 0) begin[s] = i;
      end[s] = i + 1;
    }
  }
  // The first column local row i may see: 0 in segment 0, else the first token (or the row's own
  // segment when it comes first). Non-decreasing in i, so a row tile starting at r0 needs no
  // column below first_column(r0): the kernels skip those blocked tiles (for the recent rows of a
  // window, all P old items) instead of computing and zeroing them.
  int64_t first_column(int64_t i) const {
    if (!codes) return 0;
    const int32_t c = codes[i];
    const int64_t own = c >= 0 ? c : -c - 1;
    if (own == 0) return 0;
    int64_t first = i;
    if (own < static_cast<int64_t>(begin.size()) && begin[own] >= 0) first = std::min(first, begin[own]);
    if (first_token >= 0) first = std::min(first, first_token);
    return first;
  }
  // Zeroes, in the score rows of local row i (columns [0, i]), the items of segments other than
  // row i's: those of earlier segments (later ones lie beyond i).
  void apply(int64_t i, float* row, float* other = nullptr) const {
    if (!codes) return;
    const int32_t c = codes[i];
    const int64_t own = c >= 0 ? c : -c - 1;
    for (int64_t s = 0; s < own && s < static_cast<int64_t>(begin.size()); ++s) {
      if (begin[s] < 0 || begin[s] > i) continue;
      const int64_t e = std::min(end[s], i + 1);
      std::fill(row + begin[s], row + e, 0.f);
      if (other) std::fill(other + begin[s], other + e, 0.f);
    }
  }
};

// HSTU pointwise attention, one task per sequence (its heads share the bias, and so its gradient).
// Inputs: q, k, v, then the bias as dense [B, W, W], position table, time table, time buckets
// (each an empty tensor when absent), lengths, n, the position table's origin.
struct JaggedPointwise : public torch::autograd::Function<JaggedPointwise> {
  static BiasRows bias_rows(const torch::Tensor& dense, const torch::Tensor& position, const torch::Tensor& time,
                            const torch::Tensor& buckets, int64_t origin, int64_t w) {
    BiasRows r;
    r.dense = dense.numel() > 0 ? dense.data_ptr<float>() : nullptr;
    r.position = position.numel() > 0 ? position.data_ptr<float>() : nullptr;
    r.origin = origin;
    r.time = time.numel() > 0 ? time.data_ptr<float>() : nullptr;
    r.buckets = r.time ? buckets.data_ptr<uint8_t>() : nullptr;
    r.w = w;
    return r;
  }

  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& q_in,
                               const torch::Tensor& k_in, const torch::Tensor& v_in, const torch::Tensor& dense_in,
                               const torch::Tensor& position_in, const torch::Tensor& time_in,
                               const torch::Tensor& buckets_in, const torch::Tensor& lengths, const torch::Tensor& cu_in,
                               const torch::Tensor& segments_in, double n, int64_t origin, int64_t bias_width) {
    auto dense_last = [](const torch::Tensor& t) { return t.stride(-1) == 1 ? t : t.contiguous(); };
    auto q = dense_last(q_in), k = dense_last(k_in), v = dense_last(v_in);
    auto dense = dense_in.contiguous(), position = position_in.contiguous(), time = time_in.contiguous(),
         buckets = buckets_in.contiguous(), cu = cu_in.contiguous(), segments = segments_in.contiguous();
    const bool packed = cu.numel() > 0;
    const int32_t* codes = segments.numel() > 0 ? segments.data_ptr<int32_t>() : nullptr;  // packed rows only
    const int64_t* cup = packed ? cu.data_ptr<int64_t>() : nullptr;
    const int64_t h = q.size(1), dv = v.size(-1), dqk = q.size(-1);
    const int64_t w = packed ? (lengths.numel() ? lengths.max().item<int64_t>() : 0) : q.size(2);
    auto out = packed ? torch::zeros({q.size(0), h, dv}, q.options())
                      : zeros_bwhd(q.size(0), h, w, dv, q.options());           // like q, dv wide
    const std::vector<Block> seqs = plan_blocks(lengths, 1, w, nullptr, packed);
    const RowLayout Q = layout_of(q, cup), K = layout_of(k, cup), V = layout_of(v, cup), O = layout_of(out, cup);
    const BiasRows bias = bias_rows(dense, position, time, buckets, origin, bias_width);
    const float inv_n = static_cast<float>(1.0 / n);
    for_each_block(seqs, kRowTile * w, [&](const Block& blk, float* a) {
      const int64_t l = blk.l, off = blk.off, bias_off = bias.w - l;  // the bias is in padded coordinates
      const SegmentBlocking blocking(codes ? codes + cup[blk.b] : nullptr, l);
      for (int64_t hi = 0; hi < h; ++hi) {
        const float *qb = Q.row(blk.b, hi, off), *kb = K.row(blk.b, hi, off), *vb = V.row(blk.b, hi, off);
        float* ob = O.row(blk.b, hi, off);
        for (int64_t r0 = 0; r0 < l; r0 += kRowTile) {
          const int64_t r1 = std::min(l, r0 + kRowTile), rows = r1 - r0, c0 = blocking.first_column(r0);
          pointwise_scores(qb + r0 * Q.si, Q.si, kb, K.si, bias, blk.b, bias_off, r0, rows, c0, r1, dqk, a, l);
          for (int64_t i = r0; i < r1; ++i) {  // A = SiLU(S) / n over c0 <= j <= i
            float* row = a + (i - r0) * l;
            cpu::silu_scale_row(row + c0, i + 1 - c0, inv_n);
            blocking.apply(i, row);
            std::fill(row + i + 1, row + r1, 0.f);
          }
          cpu::gemm(false, false, rows, dv, r1 - c0, 1.f, a + c0, l, vb + c0 * V.si, V.si, 0.f, ob + r0 * O.si,
                    O.si);  // O = A V
        }
      }
    });
    ctx->save_for_backward({q, k, v, dense, position, time, buckets, lengths, cu, segments});
    ctx->saved_data["n"] = n;
    ctx->saved_data["origin"] = origin;
    ctx->saved_data["bias_width"] = bias_width;
    ctx->saved_data["w"] = w;
    return out;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &q = saved[0], &k = saved[1], &v = saved[2], &dense = saved[3], &position = saved[4],
               &time = saved[5], &buckets = saved[6], &lengths = saved[7], &cu = saved[8], &segments = saved[9];
    const float inv_n = static_cast<float>(1.0 / ctx->saved_data["n"].toDouble());
    const int64_t origin = ctx->saved_data["origin"].toInt(), bias_width = ctx->saved_data["bias_width"].toInt();
    auto g = grads[0].stride(-1) == 1 ? grads[0] : grads[0].contiguous();   // like the output
    const bool packed = cu.numel() > 0;
    const int64_t* cup = packed ? cu.data_ptr<int64_t>() : nullptr;
    const int32_t* codes = segments.numel() > 0 ? segments.data_ptr<int32_t>() : nullptr;
    const int64_t h = q.size(1), dqk = q.size(-1), dv = v.size(-1), w = ctx->saved_data["w"].toInt();
    auto zeros_like_q = [&](int64_t d) {
      return packed ? torch::zeros({q.size(0), h, d}, q.options()) : zeros_bwhd(q.size(0), h, w, d, q.options());
    };
    auto gq = zeros_like_q(dqk), gk = zeros_like_q(dqk), gv = zeros_like_q(dv);
    const BiasRows bias = bias_rows(dense, position, time, buckets, origin, bias_width);
    const int64_t threads = at::get_num_threads();
    torch::Tensor g_dense = bias.dense ? torch::zeros_like(dense) : torch::Tensor();          // [B, W, W]
    torch::Tensor g_position = bias.position ? torch::zeros({threads, position.numel()}, q.options()) : torch::Tensor();
    torch::Tensor g_time = bias.time ? torch::zeros({threads, time.numel()}, q.options()) : torch::Tensor();
    const std::vector<Block> seqs = plan_blocks(lengths, 1, w, nullptr, packed);
    const RowLayout Q = layout_of(q, cup), K = layout_of(k, cup), V = layout_of(v, cup), G = layout_of(g, cup),
                    GQ = layout_of(gq, cup), GK = layout_of(gk, cup), GV = layout_of(gv, cup);
    const int64_t tile = kRowTile * w;
    // Scratch per row tile: S (then dS), A and dA.
    for_each_block(seqs, 3 * tile, [&](const Block& blk, float* scratch) {
      const int64_t l = blk.l, off = blk.off, bias_off = bias.w - l, t_id = at::get_thread_num();
      float *ds = scratch, *a = scratch + tile, *da = scratch + 2 * tile;
      float* gpos = bias.position ? g_position.data_ptr<float>() + t_id * position.numel() : nullptr;
      float* gtime = bias.time ? g_time.data_ptr<float>() + t_id * time.numel() : nullptr;
      const SegmentBlocking blocking(codes ? codes + cup[blk.b] : nullptr, l);
      for (int64_t hi = 0; hi < h; ++hi) {
        const float *qb = Q.row(blk.b, hi, off), *kb = K.row(blk.b, hi, off), *vb = V.row(blk.b, hi, off),
                    *gb = G.row(blk.b, hi, off);
        float *gqb = GQ.row(blk.b, hi, off), *gkb = GK.row(blk.b, hi, off), *gvb = GV.row(blk.b, hi, off);
        for (int64_t r0 = 0; r0 < l; r0 += kRowTile) {
          // Columns below c0 are blocked for the whole tile: neither computed nor read.
          const int64_t r1 = std::min(l, r0 + kRowTile), rows = r1 - r0, c0 = blocking.first_column(r0), nc = r1 - c0;
          pointwise_scores(qb + r0 * Q.si, Q.si, kb, K.si, bias, blk.b, bias_off, r0, rows, c0, r1, dqk, ds, l);
          cpu::gemm(false, true, rows, nc, dv, 1.f, gb + r0 * G.si, G.si, vb + c0 * V.si, V.si, 0.f, da + c0,
                    l);  // dA = dO V^T
          for (int64_t i = r0; i < r1; ++i) {
            const int64_t t = (i - r0) * l, row = (blk.b * bias.w + bias_off + i) * bias.w + bias_off + c0;
            // A, and dS = dA SiLU'(S) / n
            cpu::silu_scale_backward_row(ds + t + c0, a + t + c0, da + t + c0, i + 1 - c0, inv_n);
            blocking.apply(i, ds + t, a + t);
            std::fill(ds + t + i + 1, ds + t + r1, 0.f);
            std::fill(a + t + i + 1, a + t + r1, 0.f);
            if (bias.dense) cpu::add_row(g_dense.data_ptr<float>() + row, ds + t + c0, i + 1 - c0);
            if (gpos || gtime)
              cpu::scatter_bias_tables_row(ds + t + c0, gpos ? gpos + origin - i + c0 : nullptr, gtime,
                                           bias.buckets ? bias.buckets + row : nullptr, i + 1 - c0);
          }
          cpu::gemm(true, false, nc, dv, rows, 1.f, a + c0, l, gb + r0 * G.si, G.si, 1.f, gvb + c0 * GV.si,
                    GV.si);  // dV += A^T dO
          cpu::gemm(false, false, rows, dqk, nc, 1.f, ds + c0, l, kb + c0 * K.si, K.si, 0.f, gqb + r0 * GQ.si,
                    GQ.si);  // dQ = dS K
          cpu::gemm(true, false, nc, dqk, rows, 1.f, ds + c0, l, qb + r0 * Q.si, Q.si, 1.f, gkb + c0 * GK.si,
                    GK.si);  // dK += dS^T Q
        }
      }
    });
    if (g_position.defined()) g_position = g_position.sum(0);
    if (g_time.defined()) g_time = g_time.sum(0);
    return {gq,
            gk,
            gv,
            g_dense,
            g_position,
            g_time,
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor()};
  }
};

}  // namespace

torch::Tensor padded_pointwise_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                         const torch::Tensor& bias, const torch::Tensor& lengths, double n) {
  const int64_t w = q.size(2);
  auto pos = torch::arange(w, lengths.options());                                     // [W]
  auto valid = pos.unsqueeze(0).ge((w - lengths).unsqueeze(1));                      // [B, W]
  auto causal = torch::ones({w, w}, torch::kBool).tril();                            // [W, W]
  auto mask = causal.unsqueeze(0).logical_and(valid.unsqueeze(1)).logical_and(valid.unsqueeze(2));
  auto scores = torch::matmul(q, k.transpose(-2, -1));                                // [B, H, W, W]
  if (bias.defined()) scores = scores + bias.unsqueeze(1);
  auto attn = torch::silu(scores) * (mask.unsqueeze(1).to(q.scalar_type()) / n);
  return torch::matmul(attn, v);                                                      // [B, H, W, dv]
}

torch::Tensor jagged_pointwise_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                         const torch::Tensor& bias, const torch::Tensor& lengths, double n) {
  TORCH_CHECK(q.dim() == 4 && k.sizes() == q.sizes() && v.dim() == 4, "q, k, v must be [B, H, W, d]");
  TORCH_CHECK(lengths.dim() == 1 && lengths.size(0) == q.size(0) && lengths.scalar_type() == torch::kInt64,
              "lengths must be [B] int64");
  if (!q.device().is_cpu() || q.scalar_type() != torch::kFloat)
    return padded_pointwise_attention(q, k, v, bias, lengths, n);
  auto none = torch::zeros({0}, q.options());
  return JaggedPointwise::apply(q, k, v, bias.defined() ? bias.expand({q.size(0), q.size(2), q.size(2)}) : none, none,
                                none, torch::zeros({0}, q.options().dtype(torch::kByte)), lengths.contiguous(),
                                torch::zeros({0}, torch::kLong), torch::zeros({0}, torch::kInt), n, int64_t{0},
                                q.size(2));
}

torch::Tensor materialize_bias(const RelativeBiasTables& bias, int64_t batch, int64_t width) {
  torch::Tensor out;
  if (bias.position_weights.defined()) {
    auto idx = torch::arange(width, torch::kLong);                                             // [W]
    auto rel = bias.position_origin + idx.unsqueeze(0) - idx.unsqueeze(1);                     // [W, W]: origin + j - i
    out = bias.position_weights.index_select(0, rel.reshape({-1}).to(bias.position_weights.device()))
              .view({1, width, width});
  }
  if (bias.time_weights.defined()) {
    auto t = bias.time_weights.index_select(0, bias.time_buckets.reshape({-1}).to(torch::kLong))
                 .view({batch, width, width});
    out = out.defined() ? out + t : t;
  }
  return out.defined() ? out.expand({batch, width, width}) : out;
}

namespace {

// The pointwise kernel with the bias as tables; cu empty when the rows are padded [B, H, W, d].
torch::Tensor pointwise_with_tables(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                    const RelativeBiasTables& bias, const torch::Tensor& lengths,
                                    const torch::Tensor& cu, double n, int64_t width,
                                    const torch::Tensor& segments = torch::zeros({0}, torch::kInt)) {
  TORCH_CHECK(lengths.numel() == 0 || lengths.max().item<int64_t>() <= width, "a sequence is longer than width");
  TORCH_CHECK(!bias.position_weights.defined() ||
                  (bias.position_origin >= width - 1 && bias.position_weights.numel() > bias.position_origin),
              "position table too short for width ", width);
  TORCH_CHECK(!bias.time_weights.defined() ||
                  (bias.time_buckets.scalar_type() == torch::kByte &&
                   bias.time_buckets.sizes() == torch::IntArrayRef({lengths.size(0), width, width})),
              "time_buckets must be [B, width, width] uint8");
  auto none = torch::zeros({0}, q.options());
  return JaggedPointwise::apply(q, k, v, none, bias.position_weights.defined() ? bias.position_weights : none,
                                bias.time_weights.defined() ? bias.time_weights : none,
                                bias.time_weights.defined() ? bias.time_buckets
                                                            : torch::zeros({0}, q.options().dtype(torch::kByte)),
                                lengths, cu, segments, n, bias.position_origin, width);
}

}  // namespace

torch::Tensor jagged_pointwise_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                         const RelativeBiasTables& bias, const torch::Tensor& lengths, double n) {
  TORCH_CHECK(q.dim() == 4 && k.sizes() == q.sizes() && v.dim() == 4, "q, k, v must be [B, H, W, d]");
  const int64_t w = q.size(2);
  if (!q.device().is_cpu() || q.scalar_type() != torch::kFloat)
    return padded_pointwise_attention(q, k, v, materialize_bias(bias, q.size(0), w), lengths, n);
  return pointwise_with_tables(q, k, v, bias, lengths.contiguous(), torch::zeros({0}, torch::kLong), n, w);
}

torch::Tensor packed_pointwise_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                         const RelativeBiasTables& bias, const torch::Tensor& cu_seqlens,
                                         int64_t width, double n, const torch::Tensor& segments) {
  TORCH_CHECK(q.dim() == 3 && k.sizes() == q.sizes() && v.dim() == 3, "q, k, v must be [T, H, d]");
  TORCH_CHECK(q.device().is_cpu() && q.scalar_type() == torch::kFloat, "packed attention is the CPU float kernel");
  auto cu = cu_seqlens.contiguous();
  TORCH_CHECK(cu.dim() == 1 && cu.scalar_type() == torch::kInt64 && cu[-1].item<int64_t>() == q.size(0),
              "cu_seqlens must be [B + 1] int64 ending at the number of rows");
  auto lengths = (cu.narrow(0, 1, cu.size(0) - 1) - cu.narrow(0, 0, cu.size(0) - 1)).contiguous();  // [B]
  if (!segments.defined()) return pointwise_with_tables(q, k, v, bias, lengths, cu, n, width);
  TORCH_CHECK(segments.dim() == 1 && segments.size(0) == q.size(0) && segments.scalar_type() == torch::kInt,
              "segments must be [T] int32");
  return pointwise_with_tables(q, k, v, bias, lengths, cu, n, width, segments.contiguous());
}

namespace {

// Key-padding mask of left-padded rows: [B, W], true at real positions.
torch::Tensor real_keys(const torch::Tensor& lengths, int64_t w) {
  auto pos = torch::arange(w, lengths.options());                                     // [W]
  return pos.unsqueeze(0).ge((w - lengths).unsqueeze(1));                             // [B, W]
}

}  // namespace

torch::Tensor last_query_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                   const torch::Tensor& lengths) {
  const int64_t w = k.size(2);
  auto valid = real_keys(lengths.to(q.device()), w).unsqueeze(1).unsqueeze(1);        // [B, 1, 1, W]
  auto scores = torch::matmul(q, k.transpose(-2, -1)).masked_fill(valid.logical_not(), -INFINITY);  // [B, H, 1, W]
  return torch::matmul(torch::softmax(scores, -1).nan_to_num(0.0), v);                // [B, H, 1, dh]
}

torch::Tensor last_query_pointwise_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                             const torch::Tensor& bias_row, const torch::Tensor& lengths, double n) {
  const int64_t w = k.size(2);
  auto valid = real_keys(lengths.to(q.device()), w).unsqueeze(1).unsqueeze(1);        // [B, 1, 1, W]
  auto scores = torch::matmul(q, k.transpose(-2, -1));                                // [B, H, 1, W]
  if (bias_row.defined()) scores = scores + bias_row.unsqueeze(1).unsqueeze(1);
  auto attn = torch::silu(scores) * (valid.to(q.scalar_type()) / n);
  return torch::matmul(attn, v);                                                      // [B, H, 1, dv]
}

torch::Tensor materialize_last_bias_row(const RelativeBiasTables& bias, int64_t batch, int64_t width) {
  torch::Tensor out;
  if (bias.position_weights.defined()) {
    auto rel = bias.position_origin - (width - 1) + torch::arange(width, torch::kLong);  // origin + j - (W - 1)
    out = bias.position_weights.index_select(0, rel.to(bias.position_weights.device())).unsqueeze(0);  // [1, W]
  }
  if (bias.time_weights.defined()) {
    auto row = bias.time_buckets.select(1, width - 1).to(torch::kLong);                // [B, W]
    auto t = bias.time_weights.index_select(0, row.reshape({-1})).view({batch, width});
    out = out.defined() ? out + t : t;
  }
  return out.defined() ? out.expand({batch, width}) : out;
}

torch::Tensor padded_causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                      const torch::Tensor& lengths, double dropout_p, bool training) {
  const int64_t w = q.size(2);
  auto pos = torch::arange(w, lengths.options());                                     // [W]
  auto key_valid = pos.unsqueeze(0).ge((w - lengths).unsqueeze(1));                  // [B, W]
  auto causal = torch::ones({w, w}, torch::kBool).tril();                            // [W, W]
  auto allowed = causal.unsqueeze(0).logical_and(key_valid.unsqueeze(1)).unsqueeze(1);  // [B, 1, W, W]
  auto scores = torch::matmul(q, k.transpose(-2, -1)).masked_fill(allowed.logical_not(), -INFINITY);
  auto probs = torch::softmax(scores, -1).nan_to_num(0.0);                            // padded rows -> 0
  probs = fast_dropout(probs, dropout_p, training);
  return torch::matmul(probs, v) * key_valid.unsqueeze(1).unsqueeze(-1);             // [B, H, W, dh]
}

torch::Tensor jagged_causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                      const torch::Tensor& lengths, double dropout_p, bool training) {
  TORCH_CHECK(q.dim() == 4 && k.sizes() == q.sizes() && v.sizes() == q.sizes(), "q, k, v must be [B, H, W, dh]");
  TORCH_CHECK(lengths.dim() == 1 && lengths.size(0) == q.size(0) && lengths.scalar_type() == torch::kInt64,
              "lengths must be [B] int64");
  if (!q.device().is_cpu() || q.scalar_type() != torch::kFloat)
    return padded_causal_attention(q, k, v, lengths, dropout_p, training);
  auto len = lengths.contiguous();
  return JaggedAttention::apply(q, k, v, len, torch::zeros({0}, lengths.options()), dropout_p, training);
}

torch::Tensor packed_causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                      const torch::Tensor& cu_seqlens, double dropout_p, bool training) {
  TORCH_CHECK(q.dim() == 3 && k.sizes() == q.sizes() && v.sizes() == q.sizes(), "q, k, v must be [T, H, dh]");
  TORCH_CHECK(cu_seqlens.dim() == 1 && cu_seqlens.scalar_type() == torch::kInt64 && cu_seqlens.size(0) >= 1,
              "cu_seqlens must be [B + 1] int64");
  TORCH_CHECK(q.device().is_cpu() && q.scalar_type() == torch::kFloat, "packed attention is the CPU float kernel");
  auto cu = cu_seqlens.contiguous();
  TORCH_CHECK(cu[-1].item<int64_t>() == q.size(0), "cu_seqlens must end at the number of rows");
  auto lengths = (cu.narrow(0, 1, cu.size(0) - 1) - cu.narrow(0, 0, cu.size(0) - 1)).contiguous();  // [B]
  return JaggedAttention::apply(q, k, v, lengths, cu, dropout_p, training);
}

}  // namespace seqrec::nn
